"""Fused multi-step LIF: one autograd node for all T steps, a hand-derived backward, only ``H`` saved.

The reference loop (:func:`snn_lightning.neurons.dynamics.lif_multistep`) lets autograd record
every step, keeping three ``[N]`` tensors per step (12 bytes per element in float32).
:class:`FusedLIF` runs the same recurrence and keeps only the pre-spike membrane ``H [T, N]``
(4 bytes per element) plus the leak: spikes and the post-reset membrane are recomputed from it
in backward, which applies SpikingJelly's BPTT formulas (``shared/REFERENCES.md``). The node is
given the :class:`~.ops.Implementation` that computes forward and backward on a ``[T, N]`` view
(:func:`.dispatch.fused_implementation` picks it for a backend and a device):

* :data:`TORCH_LOOP`: a loop of PyTorch ops (backend ``fused`` off the CPU, or without a compiler);
* the C++/OpenMP kernel of :mod:`.cpu` (backend ``fused`` on the CPU);
* the Triton kernels of :mod:`.triton_lif` (backend ``triton``).

The membrane is kept in float32 (float64 for float64 input) whatever the input precision, so
every implementation matches the reference in spikes bit for bit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from snn_lightning.neurons.dynamics import LIFSettings, charge, reset
from snn_lightning.neurons.kernels.ops import SURROGATE_FROM_TABLE, Implementation, KernelSettings

__all__ = ["FusedLIF", "TORCH_LOOP", "LeakLayout", "leak_layout", "memory_order"]


class LeakLayout(NamedTuple):
    """The leak ``1/tau`` as a flat ``[channels]`` tensor; neuron ``n`` of a step uses ``(n // inner) % channels``."""

    leak: Tensor
    channels: int
    inner: int


def leak_layout(inv_tau: Tensor, step_shape: torch.Size, state_dtype: torch.dtype) -> LeakLayout:
    """Return ``inv_tau`` (broadcastable to one step ``[B, C, ...]``) flattened for the kernels.

    A scalar gives one channel; a tensor whose non-singleton dims are consecutive dims of the
    step (``[C, 1, 1]`` per channel, ``[C, H, W]`` per neuron) is indexed in place; any other
    broadcast is expanded to one value per neuron.
    """
    leak = inv_tau.detach().to(state_dtype)
    if leak.numel() == 1:
        return LeakLayout(leak.reshape(1), 1, 1)
    shape = (1,) * (len(step_shape) - leak.ndim) + tuple(leak.shape)
    dims = [dim for dim, size in enumerate(shape) if size != 1]
    first, last = dims[0], dims[-1]
    if all(shape[dim] == step_shape[dim] for dim in range(first, last + 1)):
        return LeakLayout(leak.reshape(-1).contiguous(), leak.numel(), math.prod(step_shape[last + 1 :]))
    return LeakLayout(leak.expand(step_shape).reshape(-1).contiguous(), math.prod(step_shape), 1)


def memory_order(x_seq: Tensor) -> tuple[int, ...]:
    """Return the permutation of ``x_seq``'s dims that lists them from outermost to innermost in memory.

    Time stays first. ``x_seq.permute(order)`` is contiguous for every dense layout, e.g.
    ``(0, 1, 3, 4, 2)`` for channels-last steps ``[T, B, C, H, W]``, so the kernels run on the
    memory as it lies instead of copying it to the standard order; for other strides (a
    non-dense view) the result is only a best effort and the caller's ``contiguous()`` copies.
    """
    step_dims = sorted(range(1, x_seq.ndim), key=lambda dim: (-x_seq.stride(dim), dim))
    order = (0, *step_dims)
    return order if x_seq.permute(order).is_contiguous() else tuple(range(x_seq.ndim))


def forward_torch(x: Tensor, leak: Tensor, settings: KernelSettings) -> tuple[Tensor, Tensor]:
    """Return spikes ``[T, N]`` (dtype of ``x``) and the pre-spike membrane ``H [T, N]`` (state dtype) for ``x [T, N]``."""
    state_dtype = leak.dtype
    # A step viewed as [outer, channels, inner] broadcasts against the leak as [channels, 1].
    steps = x.view(x.shape[0], -1, settings.channels, settings.inner)
    k = leak.view(settings.channels, 1)
    rest = settings.v_rest
    reset_to = settings.v_reset if settings.hard_reset else None
    h_seq = torch.empty(steps.shape, dtype=state_dtype, device=x.device)
    spikes = torch.empty_like(steps)
    v = torch.full(steps.shape[1:], rest, dtype=state_dtype, device=x.device)
    for t in range(steps.shape[0]):
        h = charge(v, steps[t].to(state_dtype), k, rest, settings.decay_input)
        fired = (h - settings.v_threshold >= 0).to(state_dtype)
        v = reset(h, fired, settings.v_threshold, reset_to)
        h_seq[t] = h
        spikes[t] = fired
    return spikes.view(x.shape), h_seq.view(x.shape)


def backward_torch(
    grad_spikes: Tensor, h_seq: Tensor, leak: Tensor, table: Tensor | None, settings: KernelSettings, leak_grad: bool
) -> tuple[Tensor, Tensor]:
    """Return ``dL/dX [T, N]`` and, if ``leak_grad``, per neuron ``sum_t dL/dH[t] dH[t]/dk`` ``[N]`` (else empty).

    Walks t backwards: ``dL/dH[t] = dL/dS[t] σ' + dL/dH[t+1] (1 - k) dV[t]/dH[t]`` with
    ``dV/dH = 1 - S + (V_reset - H) σ' (1 - D)`` (hard) or ``1 - V_th σ' (1 - D)`` (soft).
    ``table`` holds the surrogate derivatives σ' ``[T, N]``; the compiled kernels take it only for a
    surrogate they do not know (``surrogate_kind == SURROGATE_FROM_TABLE``), this loop always.
    """
    shape = (h_seq.shape[0], -1, settings.channels, settings.inner)
    h_steps, grad_steps, sg_steps = h_seq.view(shape), grad_spikes.view(shape), table.view(shape)
    k = leak.view(settings.channels, 1)
    v_threshold, v_reset, rest = settings.v_threshold, settings.v_reset, settings.v_rest
    reset_to = v_reset if settings.hard_reset else None
    through_reset = 0.0 if settings.detach_reset else 1.0
    grad_x = torch.empty_like(grad_steps)
    carry = torch.zeros_like(h_steps[0])
    grad_leak = torch.zeros_like(h_steps[0]) if leak_grad else None
    for t in reversed(range(h_steps.shape[0])):
        h, sg = h_steps[t], sg_steps[t]
        fired = (h - v_threshold >= 0).to(h.dtype)
        if settings.hard_reset:
            dv_dh = (1 - fired) + (v_reset - h) * sg * through_reset
        else:
            dv_dh = 1 - v_threshold * sg * through_reset
        grad_h = grad_steps[t].to(h.dtype) * sg + carry * dv_dh
        grad_x[t] = grad_h * k if settings.decay_input else grad_h
        carry = grad_h * (1 - k)
        if grad_leak is not None:
            if t == 0:
                v = torch.full_like(h, rest)
            else:
                previous = h_steps[t - 1]
                v = reset(previous, (previous - v_threshold >= 0).to(h.dtype), v_threshold, reset_to)
            # dH/dk is X - (V - rest) with input decay, i.e. (H - V) / k as X is not saved; else -(V - rest).
            grad_leak += grad_h * ((h - v) / k if settings.decay_input else -(v - rest))
    leak_partial = h_seq.new_empty(0) if grad_leak is None else grad_leak.reshape(-1)
    return grad_x.view(grad_spikes.shape), leak_partial


TORCH_LOOP = Implementation(forward_torch, backward_torch, builtin_surrogates=False)
"""The fused node's implementation on any device: a loop of PyTorch ops over the steps."""


def _restore_order(flat: Tensor, ordered_shape: tuple[int, ...], order: tuple[int, ...]) -> Tensor:
    """Return ``flat [T, N]``, laid out as ``ordered_shape``, viewed back in the caller's dim order (no copy)."""
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return flat.view(ordered_shape).permute(inverse)


class FusedLIF(torch.autograd.Function):
    """Multi-step LIF as one autograd node: spikes forward, hand-derived BPTT backward from the saved ``H``.

    ``FusedLIF.apply(x_seq, inv_tau, settings, implementation)`` takes the arguments of
    :func:`~snn_lightning.neurons.dynamics.lif_multistep` (``inv_tau`` as a tensor) and the
    :class:`~.ops.Implementation` that runs forward and backward.
    """

    @staticmethod
    def forward(ctx, x_seq: Tensor, inv_tau: Tensor, settings: LIFSettings, implementation: Implementation) -> Tensor:
        state_dtype = torch.promote_types(x_seq.dtype, torch.float32)
        # Work on the memory order of the input (channels-last stays channels-last, no copy).
        order = memory_order(x_seq)
        x_ordered = x_seq.permute(order)
        leak_shape = (1,) * (x_seq.ndim - 1 - inv_tau.ndim) + tuple(inv_tau.shape)
        inv_tau_ordered = inv_tau.reshape(leak_shape).permute([dim - 1 for dim in order[1:]])
        layout = leak_layout(inv_tau_ordered, x_ordered.shape[1:], state_dtype)
        kernel_settings = KernelSettings.of(settings, layout.channels, layout.inner)
        x = x_ordered.reshape(x_seq.shape[0], -1).contiguous()
        spikes, h_seq = implementation.forward(x, layout.leak, kernel_settings)
        ctx.save_for_backward(h_seq, layout.leak)
        ctx.kernel_settings = kernel_settings
        ctx.surrogate = settings.surrogate
        ctx.implementation = implementation
        ctx.inv_tau_shape, ctx.inv_tau_dtype = inv_tau.shape, inv_tau.dtype
        ctx.order, ctx.ordered_shape = order, x_ordered.shape
        return _restore_order(spikes, x_ordered.shape, order)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor | None, ...]:
        h_seq, leak = ctx.saved_tensors
        settings = ctx.kernel_settings
        implementation = ctx.implementation
        leak_grad = ctx.needs_input_grad[1]
        grad = grad_spikes.permute(ctx.order).reshape(h_seq.shape).contiguous()
        table = None
        if settings.surrogate_kind == SURROGATE_FROM_TABLE or not implementation.builtin_surrogates:
            table = ctx.surrogate.derivative(h_seq - settings.v_threshold).contiguous()
        grad_x, leak_partial = implementation.backward(grad, h_seq, leak, table, settings, leak_grad)
        grad_inv_tau = None
        if leak_grad:
            per_neuron = _restore_order(leak_partial.view(1, -1), (1, *ctx.ordered_shape[1:]), ctx.order)[0]
            grad_inv_tau = per_neuron.sum_to_size(ctx.inv_tau_shape).to(ctx.inv_tau_dtype)
        return _restore_order(grad_x, ctx.ordered_shape, ctx.order), grad_inv_tau, None, None
