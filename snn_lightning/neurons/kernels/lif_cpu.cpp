// Fused multi-step LIF forward and backward for the CPU: one pass over [T, N] each, OpenMP over N.
//
// Compiled once by snn_lightning/neurons/kernels/cpu.py (plain C ABI, no torch headers, so it
// builds in a few seconds) and called through ctypes. The arithmetic repeats the reference loop
// (snn_lightning/neurons/dynamics.py) operation by operation in the state type (float, or double
// for float64 inputs); it is built with -ffp-contract=off so no step is fused into an FMA and the
// spikes match the reference bit for bit. Each thread walks blocks of neurons through all T steps
// with the block's membrane in a small stack array, so the inner loops vectorise.
#include <stdint.h>
#include <math.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#ifndef SNN_NO_LIBMVEC
extern "C" {
// glibc's libmvec provides vector expf/exp; declaring them SIMD lets the sigmoid surrogate vectorise.
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
double exp(double);
}
#endif

namespace {

const int64_t kBlock = 1024;

enum DType { kFloat32 = 0, kFloat64 = 1, kBFloat16 = 2, kFloat16 = 3 };
enum SurrogateKind { kFromTable = 0, kATan = 1, kSigmoid = 2, kRectangle = 3, kTriangle = 4 };

struct bf16 { uint16_t bits; };

inline float exponential(float v) { return expf(v); }
inline double exponential(double v) { return exp(v); }

template <typename In, typename Acc> struct IO {
  static inline Acc load(In v) { return static_cast<Acc>(v); }
  static inline In store(Acc v) { return static_cast<In>(v); }
};
template <> struct IO<bf16, float> {
  static inline float load(bf16 v) {
    uint32_t u = static_cast<uint32_t>(v.bits) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  // Round to nearest even, as torch's float -> bfloat16 conversion (NaN is not expected here).
  static inline bf16 store(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return bf16{static_cast<uint16_t>(u >> 16)};
  }
};

struct Params {
  int64_t T, N, channels, inner;
  double v_threshold, v_rest, v_reset;
  int hard_reset, detach_reset, threads;
  int surrogate;
  double surrogate_param;
};

// Fresh outputs of hundreds of MB are first touched here, and faulting them in 4 KiB pages costs
// more than the kernel itself; asking for transparent huge pages (a hint, ignored where THP is off)
// cuts that several-fold.
inline void advise_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = 2u << 20, begin = ((uintptr_t)data + huge - 1) & ~(huge - 1);
  const uintptr_t end = ((uintptr_t)data + bytes) & ~(huge - 1);
  if (end > begin) madvise((void*)begin, end - begin, MADV_HUGEPAGE);
#endif
}

// Leak 1/tau of every neuron of a block: one value, or one per channel (index (n / inner) % channels).
template <typename Acc>
inline void fill_leak(Acc* k, const Acc* leak, int64_t start, int64_t len, const Params& p) {
  for (int64_t i = 0; i < len; ++i) k[i] = leak[p.channels == 1 ? 0 : ((start + i) / p.inner) % p.channels];
}

template <typename In, typename Acc, bool DecayInput>
void forward(const In* x, In* spikes, Acc* h_seq, const Acc* leak, const Params& p) {
  const Acc vth = p.v_threshold, rest = p.v_rest, vr = p.v_reset;
  const bool hard = p.hard_reset;
  const int64_t blocks = (p.N + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(p.threads)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t start = b * kBlock, len = p.N - start < kBlock ? p.N - start : kBlock;
    Acc v[kBlock], k[kBlock];
    fill_leak(k, leak, start, len, p);
    for (int64_t i = 0; i < len; ++i) v[i] = rest;
    for (int64_t t = 0; t < p.T; ++t) {
      const In* xt = x + t * p.N + start;
      In* st = spikes + t * p.N + start;
      Acc* ht = h_seq + t * p.N + start;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const Acc xi = IO<In, Acc>::load(xt[i]);
        const Acc h = DecayInput ? v[i] + (xi - (v[i] - rest)) * k[i] : (v[i] - (v[i] - rest) * k[i]) + xi;
        const bool fire = h - vth >= Acc(0);
        ht[i] = h;
        st[i] = IO<In, Acc>::store(fire ? Acc(1) : Acc(0));
        v[i] = fire ? (hard ? vr : h - vth) : h;
      }
    }
  }
}

template <typename Acc>
inline void surrogate_derivative(Acc* sg, const Acc* h, const Acc* table, int64_t len, const Params& p) {
  const Acc vth = p.v_threshold, a = p.surrogate_param;
  switch (p.surrogate) {
    case kATan: {
      const Acc scale = Acc(M_PI / 2) * a, half = a / 2;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const Acc u = scale * (h[i] - vth);
        sg[i] = half / (1 + u * u);
      }
      break;
    }
    case kSigmoid:
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const Acc s = 1 / (1 + exponential(-(a * (h[i] - vth))));
        sg[i] = a * s * (1 - s);
      }
      break;
    case kRectangle:
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const Acc d = h[i] - vth;
        sg[i] = ((d < 0 ? -d : d) < a / 2 ? Acc(1) : Acc(0)) / a;
      }
      break;
    case kTriangle:
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const Acc d = h[i] - vth, r = 1 - (d < 0 ? -d : d) / a;
        sg[i] = (r > 0 ? r : Acc(0)) / a;
      }
      break;
    default:  // kFromTable (SURROGATE_FROM_TABLE): derivative precomputed by the surrogate's own Python code
      memcpy(sg, table, len * sizeof(Acc));
  }
}

// Reverse-time BPTT (SpikingJelly's formulas, see REFERENCES.md), spikes recomputed from H.
// grad_leak (optional) receives, per neuron, the sum over t of dL/dH[t] * dH[t]/d(1/tau).
template <typename In, typename Acc, bool DecayInput>
void backward(const In* grad_spikes, const Acc* h_seq, const Acc* table, In* grad_x, Acc* grad_leak, const Acc* leak,
              const Params& p) {
  const Acc vth = p.v_threshold, rest = p.v_rest, vr = p.v_reset;
  const Acc through_reset = p.detach_reset ? Acc(0) : Acc(1);
  const bool hard = p.hard_reset;
  const int64_t blocks = (p.N + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(p.threads)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t start = b * kBlock, len = p.N - start < kBlock ? p.N - start : kBlock;
    Acc k[kBlock], carry[kBlock], sg[kBlock], acc[kBlock];
    fill_leak(k, leak, start, len, p);
    for (int64_t i = 0; i < len; ++i) carry[i] = acc[i] = 0;
    for (int64_t t = p.T - 1; t >= 0; --t) {
      const Acc* ht = h_seq + t * p.N + start;
      const In* gst = grad_spikes + t * p.N + start;
      In* gxt = grad_x + t * p.N + start;
      surrogate_derivative(sg, ht, table == nullptr ? nullptr : table + t * p.N + start, len, p);
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const Acc h = ht[i];
        const Acc fire = h - vth >= Acc(0) ? Acc(1) : Acc(0);
        const Acc dv_dh = hard ? (1 - fire) + (vr - h) * sg[i] * through_reset : 1 - vth * sg[i] * through_reset;
        const Acc gh = IO<In, Acc>::load(gst[i]) * sg[i] + carry[i] * dv_dh;
        gxt[i] = IO<In, Acc>::store(DecayInput ? gh * k[i] : gh);
        carry[i] = gh * (1 - k[i]);
        sg[i] = gh;  // reused below for the leak gradient
      }
      if (grad_leak == nullptr) continue;
      const Acc* hp = t > 0 ? ht - p.N : nullptr;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        // Membrane after the previous step's reset, recomputed from its H exactly as in forward.
        Acc v = rest;
        if (hp != nullptr) {
          const bool fired = hp[i] - vth >= Acc(0);
          v = fired ? (hard ? vr : hp[i] - vth) : hp[i];
        }
        // dH/dk is X - (V - rest) with input decay, i.e. (H - V) / k since X is not saved; else -(V - rest).
        acc[i] += sg[i] * (DecayInput ? (ht[i] - v) / k[i] : -(v - rest));
      }
    }
    if (grad_leak != nullptr) memcpy(grad_leak + start, acc, len * sizeof(Acc));
  }
}

template <typename In, typename Acc>
void forward_any(int decay_input, const void* x, void* spikes, void* h, const void* leak, const Params& p) {
  advise_huge_pages(spikes, p.T * p.N * sizeof(In));
  advise_huge_pages(h, p.T * p.N * sizeof(Acc));
  if (decay_input)
    forward<In, Acc, true>((const In*)x, (In*)spikes, (Acc*)h, (const Acc*)leak, p);
  else
    forward<In, Acc, false>((const In*)x, (In*)spikes, (Acc*)h, (const Acc*)leak, p);
}

template <typename In, typename Acc>
void backward_any(int decay_input, const void* gs, const void* h, const void* table, void* gx, void* gk,
                  const void* leak, const Params& p) {
  advise_huge_pages(gx, p.T * p.N * sizeof(In));
  if (decay_input)
    backward<In, Acc, true>((const In*)gs, (const Acc*)h, (const Acc*)table, (In*)gx, (Acc*)gk, (const Acc*)leak, p);
  else
    backward<In, Acc, false>((const In*)gs, (const Acc*)h, (const Acc*)table, (In*)gx, (Acc*)gk, (const Acc*)leak, p);
}

}  // namespace

extern "C" {

// x, spikes: [T, N] in `dtype`; h (out) and leak: in the state type (double for float64, else float).
void lif_forward(int dtype, int decay_input, const void* x, void* spikes, void* h, const void* leak, Params p) {
  switch (dtype) {
    case kFloat32: forward_any<float, float>(decay_input, x, spikes, h, leak, p); break;
    case kFloat64: forward_any<double, double>(decay_input, x, spikes, h, leak, p); break;
    case kBFloat16: forward_any<bf16, float>(decay_input, x, spikes, h, leak, p); break;
    case kFloat16: forward_any<_Float16, float>(decay_input, x, spikes, h, leak, p); break;
  }
}

// table: surrogate derivatives [T, N] when p.surrogate == kTable, else null; grad_leak: [N] or null.
void lif_backward(int dtype, int decay_input, const void* grad_spikes, const void* h, const void* table,
                  void* grad_x, void* grad_leak, const void* leak, Params p) {
  switch (dtype) {
    case kFloat32: backward_any<float, float>(decay_input, grad_spikes, h, table, grad_x, grad_leak, leak, p); break;
    case kFloat64: backward_any<double, double>(decay_input, grad_spikes, h, table, grad_x, grad_leak, leak, p); break;
    case kBFloat16: backward_any<bf16, float>(decay_input, grad_spikes, h, table, grad_x, grad_leak, leak, p); break;
    case kFloat16: backward_any<_Float16, float>(decay_input, grad_spikes, h, table, grad_x, grad_leak, leak, p); break;
  }
}

}  // extern "C"
