"""Triton kernels for the multi-step LIF: one launch walks all T steps forward, one walks them back.

Each program owns ``BLOCK`` neurons and keeps their membrane in registers (float32 whatever the
input dtype; float32/bfloat16/float16 loads and stores). Forward writes the spikes and the
pre-spike membrane ``H``; backward reads ``H`` back, recomputes the spikes and the post-reset
membrane, evaluates the surrogate derivative in-kernel (ATan, Sigmoid, Rectangle, Triangle,
chosen by a constexpr; any other surrogate passes a table of derivatives) and writes ``dL/dX``
and, for a learnable leak, each neuron's ``sum_t dL/dH[t] dH[t]/dk``, which the caller reduces
over the neurons sharing a leak. Kernels are launched with FMA contraction off so the forward
rounds exactly like the reference loop and the spikes match it bit for bit.

:func:`implementation` registers the kernels as ``torch.library`` custom ops
(``snn_lightning::lif_forward_triton`` and ``lif_backward_triton``, see :func:`.ops.register_lif_ops`).
With ``TRITON_INTERPRET=1`` set before this module is imported they run on CPU tensors through
Triton's interpreter (used by the tests).
"""

import math
from functools import cache

import torch
import triton
import triton.language as tl
from torch import Tensor

from snn_lightning.neurons.kernels.ops import Implementation, KernelSettings, register_lif_ops

__all__ = ["implementation"]

_BLOCK = 1024
_NUM_WARPS = 4


@triton.jit
def _surrogate_derivative(d, parameter, KIND: tl.constexpr):
    """Return the surrogate derivative at ``d = H - V_th`` (same formulas as ``surrogate.py``)."""
    if KIND == 1:  # ATan(alpha)
        u = (parameter * (math.pi / 2)) * d
        return (parameter / 2) / (1 + u * u)
    elif KIND == 2:  # Sigmoid(alpha)
        s = tl.sigmoid(parameter * d)
        return parameter * s * (1 - s)
    elif KIND == 3:  # Rectangle(width)
        return tl.where(tl.abs(d) < parameter / 2, 1.0, 0.0) / parameter
    else:  # Triangle(width)
        return tl.maximum(1 - tl.abs(d) / parameter, 0.0) / parameter


@triton.jit
def _leak(leak_ptr, offsets, mask, channels, inner, PER_CHANNEL: tl.constexpr):
    if PER_CHANNEL:
        return tl.load(leak_ptr + (offsets // inner) % channels, mask=mask, other=1.0)
    return tl.load(leak_ptr)


@triton.jit
def _lif_forward_kernel(
    x_ptr,
    spikes_ptr,
    h_ptr,
    leak_ptr,
    T,
    N,
    channels,
    inner,
    v_threshold,
    v_rest,
    v_reset,
    HARD_RESET: tl.constexpr,
    DECAY_INPUT: tl.constexpr,
    PER_CHANNEL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < N
    k = _leak(leak_ptr, offsets, mask, channels, inner, PER_CHANNEL)
    v = tl.zeros([BLOCK], dtype=tl.float32) + v_rest
    for t in range(T):
        row = tl.cast(t, tl.int64) * N + offsets
        x = tl.load(x_ptr + row, mask=mask, other=0.0).to(tl.float32)
        # The reference's operation order (dynamics.charge), each op rounded on its own.
        if DECAY_INPUT:
            h = v + (x - (v - v_rest)) * k
        else:
            h = v - (v - v_rest) * k + x
        fire = h - v_threshold >= 0
        tl.store(h_ptr + row, h, mask=mask)
        tl.store(spikes_ptr + row, tl.where(fire, 1.0, 0.0).to(spikes_ptr.dtype.element_ty), mask=mask)
        if HARD_RESET:
            v = tl.where(fire, v_reset, h)
        else:
            v = tl.where(fire, h - v_threshold, h)


@triton.jit
def _lif_backward_kernel(
    grad_spikes_ptr,
    h_ptr,
    table_ptr,
    grad_x_ptr,
    grad_leak_ptr,
    leak_ptr,
    T,
    N,
    channels,
    inner,
    v_threshold,
    v_rest,
    v_reset,
    surrogate_parameter,
    HARD_RESET: tl.constexpr,
    DECAY_INPUT: tl.constexpr,
    DETACH_RESET: tl.constexpr,
    PER_CHANNEL: tl.constexpr,
    SURROGATE: tl.constexpr,
    LEAK_GRAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < N
    k = _leak(leak_ptr, offsets, mask, channels, inner, PER_CHANNEL)
    carry = tl.zeros([BLOCK], dtype=tl.float32)
    leak_sum = tl.zeros([BLOCK], dtype=tl.float32)
    for step in range(T):
        t = T - 1 - step
        row = tl.cast(t, tl.int64) * N + offsets
        h = tl.load(h_ptr + row, mask=mask, other=0.0)
        if SURROGATE == 0:  # SURROGATE_FROM_TABLE
            sg = tl.load(table_ptr + row, mask=mask, other=0.0)
        else:
            sg = _surrogate_derivative(h - v_threshold, surrogate_parameter, SURROGATE)
        fired = tl.where(h - v_threshold >= 0, 1.0, 0.0)
        if HARD_RESET:
            dv_dh = 1 - fired
            if not DETACH_RESET:
                dv_dh += (v_reset - h) * sg
        else:
            dv_dh = tl.full([BLOCK], 1.0, tl.float32)
            if not DETACH_RESET:
                dv_dh -= v_threshold * sg
        grad_h = tl.load(grad_spikes_ptr + row, mask=mask, other=0.0).to(tl.float32) * sg + carry * dv_dh
        grad_x = grad_h * k if DECAY_INPUT else grad_h
        tl.store(grad_x_ptr + row, grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)
        carry = grad_h * (1 - k)
        if LEAK_GRAD:
            # Membrane after the previous step's reset, recomputed from its H as in forward (V_rest at t = 0).
            previous = tl.load(h_ptr + row - N, mask=mask & (t > 0), other=0.0)
            if HARD_RESET:
                v = tl.where(previous - v_threshold >= 0, v_reset, previous)
            else:
                v = tl.where(previous - v_threshold >= 0, previous - v_threshold, previous)
            v = tl.where(t > 0, v, v_rest)
            # dH/dk is X - (V - rest) with input decay, i.e. (H - V) / k since X is not saved; else -(V - rest).
            if DECAY_INPUT:
                leak_sum += grad_h * ((h - v) / k)
            else:
                leak_sum -= grad_h * (v - v_rest)
    if LEAK_GRAD:
        tl.store(grad_leak_ptr + offsets, leak_sum, mask=mask)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, _BLOCK),)


def _check_state(leak: Tensor) -> None:
    if leak.dtype != torch.float32:
        raise TypeError(
            f"the triton LIF backend keeps a float32 membrane and takes float32/bfloat16/float16 input, "
            f"got a {leak.dtype} state; use backend='fused' for float64"
        )


def _forward(x: Tensor, leak: Tensor, settings: KernelSettings) -> tuple[Tensor, Tensor]:
    """Return spikes ``[T, N]`` and the pre-spike membrane ``H`` (float32) for currents ``x [T, N]`` (contiguous)."""
    _check_state(leak)
    T, N = x.shape
    spikes = torch.empty_like(x)
    h_seq = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    _lif_forward_kernel[_grid(N)](
        x,
        spikes,
        h_seq,
        leak,
        T,
        N,
        settings.channels,
        settings.inner,
        settings.v_threshold,
        settings.v_rest,
        settings.v_reset,
        HARD_RESET=settings.hard_reset,
        DECAY_INPUT=settings.decay_input,
        PER_CHANNEL=settings.channels > 1,
        BLOCK=_BLOCK,
        num_warps=_NUM_WARPS,
        enable_fp_fusion=False,
    )
    return spikes, h_seq


def _backward(
    grad_spikes: Tensor, h_seq: Tensor, leak: Tensor, table: Tensor | None, settings: KernelSettings, leak_grad: bool
) -> tuple[Tensor, Tensor]:
    """Return ``dL/dX [T, N]`` and the per-neuron leak gradient ``[N]`` (empty unless ``leak_grad``)."""
    _check_state(leak)
    T, N = h_seq.shape
    grad_x = torch.empty_like(grad_spikes)
    leak_partial = h_seq.new_empty(N if leak_grad else 0)
    _lif_backward_kernel[_grid(N)](
        grad_spikes,
        h_seq,
        h_seq if table is None else table,
        grad_x,
        leak_partial if leak_grad else h_seq,
        leak,
        T,
        N,
        settings.channels,
        settings.inner,
        settings.v_threshold,
        settings.v_rest,
        settings.v_reset,
        settings.surrogate_parameter,
        HARD_RESET=settings.hard_reset,
        DECAY_INPUT=settings.decay_input,
        DETACH_RESET=settings.detach_reset,
        PER_CHANNEL=settings.channels > 1,
        SURROGATE=settings.surrogate_kind,
        LEAK_GRAD=leak_grad,
        BLOCK=_BLOCK,
        num_warps=_NUM_WARPS,
        enable_fp_fusion=False,
    )
    return grad_x, leak_partial


@cache
def implementation() -> Implementation:
    """Return the Triton kernels registered as ops (registered on first call)."""
    return register_lif_ops("triton", _forward, _backward)
