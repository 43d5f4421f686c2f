// Spike-driven 2-D convolution for the CPU: forward and weight gradient touch only the nonzero inputs.
//
// Compiled once by snn_lightning/layers/spike_conv.py (plain C ABI, no torch headers) and called
// through ctypes. Tensors are channels-last (NHWC) float32; the weight is [KH, KW, C_in, C_out], so
// a nonzero input (n, y, x, c) of value v adds v * W[ky, kx, c, :] to a contiguous row of C_out
// outputs, and its share of the weight gradient is v * dL/dY[n, oy, ox, :] added to a contiguous
// row of dW. The nonzeros are first listed per input pixel (compressed rows: offsets, channel,
// value); a dense convolution does C_in * KH * KW multiply-adds per output element, this one
// (fraction of nonzeros) times as many.
#include <stdint.h>
#include <string.h>

#include <vector>

#include <omp.h>

namespace {

struct Shape {
  int64_t N, C_in, H, W, C_out, OH, OW, KH, KW, stride_h, stride_w, pad_h, pad_w;
  int threads;
};

// Bit j of the result is set when row[j] != 0, for the 16 values from row.
inline uint32_t nonzero_mask16(const float* row) {
  uint32_t mask = 0;
#pragma omp simd reduction(|:mask)
  for (int j = 0; j < 16; ++j) mask |= static_cast<uint32_t>(row[j] != 0.0f) << j;
  return mask;
}

// Call visit(c) for every nonzero channel c of an input pixel, skipping 16 zeros at a time.
template <typename Visit>
inline void for_each_nonzero(const float* row, int64_t channels, Visit visit) {
  int64_t c = 0;
  for (; c + 16 <= channels; c += 16) {
    for (uint32_t mask = nonzero_mask16(row + c); mask != 0; mask &= mask - 1) visit(c + __builtin_ctz(mask));
  }
  for (; c < channels; ++c)
    if (row[c] != 0.0f) visit(c);
}

// Sixteen floats in one vector register (AVX-512) or two (AVX2); loads and stores need no alignment.
typedef float Vec16 __attribute__((vector_size(64), aligned(4)));

// Call visit(tap, e) for every listed nonzero e of the input in reach of output pixel q, where
// tap points at the weight rows W[ky, kx, 0, :] of the kernel position that connects them.
template <typename Visit>
inline void for_each_nonzero_in_reach(const int64_t* offsets, const float* weight, int64_t q, const Shape& s,
                                      Visit visit) {
  const int64_t n = q / (s.OH * s.OW), oy = (q / s.OW) % s.OH, ox = q % s.OW;
  for (int64_t ky = 0; ky < s.KH; ++ky) {
    const int64_t iy = oy * s.stride_h - s.pad_h + ky;
    if (iy < 0 || iy >= s.H) continue;
    for (int64_t kx = 0; kx < s.KW; ++kx) {
      const int64_t ix = ox * s.stride_w - s.pad_w + kx;
      if (ix < 0 || ix >= s.W) continue;
      const int64_t p = (n * s.H + iy) * s.W + ix;
      const float* tap = weight + (ky * s.KW + kx) * s.C_in * s.C_out;
      for (int64_t e = offsets[p]; e < offsets[p + 1]; ++e) visit(tap, e);
    }
  }
}

// Add the contributions of the nonzero inputs in reach of output pixel q to output channels
// [first, first + 16 * Vectors) of `out`, the running sums held in registers.
template <int Vectors>
inline void accumulate_outputs(const int64_t* offsets, const int32_t* index, const float* value,
                               const float* __restrict weight, int64_t q, int64_t first, float* __restrict out,
                               const Shape& s) {
  Vec16 acc[Vectors];
#pragma GCC unroll 8
  for (int j = 0; j < Vectors; ++j) acc[j] = *reinterpret_cast<const Vec16*>(out + 16 * j);
  for_each_nonzero_in_reach(offsets, weight, q, s, [&](const float* tap, int64_t e) {
    const float v = value[e];
    const float* w = tap + static_cast<int64_t>(index[e]) * s.C_out + first;
#pragma GCC unroll 8
    for (int j = 0; j < Vectors; ++j) acc[j] += v * *reinterpret_cast<const Vec16*>(w + 16 * j);
  });
#pragma GCC unroll 8
  for (int j = 0; j < Vectors; ++j) *reinterpret_cast<Vec16*>(out + 16 * j) = acc[j];
}

// Channels [first, C_out) of output pixel q when fewer than 16 remain: one at a time.
inline void accumulate_remaining(const int64_t* offsets, const int32_t* index, const float* value,
                                 const float* weight, int64_t q, int64_t first, float* out, const Shape& s) {
  for_each_nonzero_in_reach(offsets, weight, q, s, [&](const float* tap, int64_t e) {
    const float* w = tap + static_cast<int64_t>(index[e]) * s.C_out;
    for (int64_t co = first; co < s.C_out; ++co) out[co] += value[e] * w[co];
  });
}

}  // namespace

extern "C" {

// Count the nonzeros of every input pixel: counts[p] for p in [0, N*H*W).
void spike_conv_count(const float* x, int64_t pixels, int64_t channels, int64_t* counts, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < pixels; ++p) {
    const float* row = x + p * channels;
    int64_t count = 0;
#pragma omp simd reduction(+:count)
    for (int64_t c = 0; c < channels; ++c) count += row[c] != 0.0f;
    counts[p] = count;
  }
}

// List the nonzeros: offsets [pixels + 1] (exclusive prefix sum of the counts) are given.
void spike_conv_gather(const float* x, int64_t pixels, int64_t channels, const int64_t* offsets, int32_t* index,
                       float* value, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t p = 0; p < pixels; ++p) {
    const float* row = x + p * channels;
    int64_t e = offsets[p];
    for_each_nonzero(row, channels, [&](int64_t c) {
      index[e] = static_cast<int32_t>(c);
      value[e] = row[c];
      ++e;
    });
  }
}

// out [N, OH, OW, C_out] = conv(x, weight) + bias (bias may be null), from the listed nonzeros of x.
void spike_conv_forward(const int64_t* offsets, const int32_t* index, const float* value, const float* weight,
                        const float* bias, float* out, Shape s) {
  const int64_t outputs = s.N * s.OH * s.OW, C = s.C_out;
#pragma omp parallel for schedule(static) num_threads(s.threads)
  for (int64_t q = 0; q < outputs; ++q) {
    float* row = out + q * C;
    if (bias != nullptr)
      memcpy(row, bias, C * sizeof(float));
    else
      memset(row, 0, C * sizeof(float));
    int64_t first = 0;
    for (; first + 64 <= C; first += 64) accumulate_outputs<4>(offsets, index, value, weight, q, first, row + first, s);
    for (; first + 16 <= C; first += 16) accumulate_outputs<1>(offsets, index, value, weight, q, first, row + first, s);
    if (first < C) accumulate_remaining(offsets, index, value, weight, q, first, row, s);
  }
}

// grad_weight [KH, KW, C_in, C_out] = sum over nonzero inputs of value * grad_out row it reached.
void spike_conv_grad_weight(const int64_t* offsets, const int32_t* index, const float* value, const float* grad_out,
                            float* grad_weight, Shape s) {
  const int64_t C = s.C_out, size = s.KH * s.KW * s.C_in * C, pixels = s.N * s.H * s.W;
  const int threads = s.threads;
  std::vector<float> partial(threads > 1 ? (threads - 1) * size : 0, 0.0f);
  memset(grad_weight, 0, size * sizeof(float));
#pragma omp parallel num_threads(threads)
  {
    const int thread = omp_get_thread_num();
    float* dw = thread == 0 ? grad_weight : partial.data() + (thread - 1) * size;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pixels; ++p) {
      if (offsets[p] == offsets[p + 1]) continue;
      const int64_t n = p / (s.H * s.W), iy = (p / s.W) % s.H, ix = p % s.W;
      for (int64_t ky = 0; ky < s.KH; ++ky) {
        const int64_t y = iy + s.pad_h - ky;
        if (y < 0 || y % s.stride_h != 0 || y / s.stride_h >= s.OH) continue;
        for (int64_t kx = 0; kx < s.KW; ++kx) {
          const int64_t x = ix + s.pad_w - kx;
          if (x < 0 || x % s.stride_w != 0 || x / s.stride_w >= s.OW) continue;
          const float* g = grad_out + ((n * s.OH + y / s.stride_h) * s.OW + x / s.stride_w) * C;
          float* tap = dw + (ky * s.KW + kx) * s.C_in * C;
          for (int64_t e = offsets[p]; e < offsets[p + 1]; ++e) {
            const float v = value[e];
            float* row = tap + static_cast<int64_t>(index[e]) * C;
#pragma omp simd
            for (int64_t co = 0; co < C; ++co) row[co] += v * g[co];
          }
        }
      }
    }
  }
  for (int t = 1; t < threads; ++t) {
    const float* src = partial.data() + (t - 1) * size;
#pragma omp parallel for simd schedule(static) num_threads(threads)
    for (int64_t i = 0; i < size; ++i) grad_weight[i] += src[i];
  }
}

}  // extern "C"
