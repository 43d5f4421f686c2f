"""Multi-step LIF dynamics as one pure function (the reference backend).

A faster backend (fused CPU loop, Triton kernel) replaces :func:`lif_multistep` with the same
signature and must match it exactly in spikes and closely in gradients.

Per neuron, ``t = 1..T`` (SpikingJelly's convention):

* charge ``H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) * k`` (``decay_input``) or
  ``H[t] = V[t-1] - (V[t-1] - V_reset) * k + X[t]``, where ``k = 1/tau``;
* fire ``S[t] = Θ(H[t] - V_th)`` (surrogate gradient backward);
* reset: hard ``V[t] = H[t] (1 - S[t]) + V_reset S[t]``; soft (``v_reset=None``)
  ``V[t] = H[t] - V_th S[t]``.

The membrane starts at ``V_reset`` (0 for soft reset) and is kept in float32 (float64 for
float64 input) whatever the input precision. ``k = 0`` with ``decay_input=False`` is the
integrate-and-fire neuron.
"""

from __future__ import annotations

import torch
from torch import Tensor

from snn_lightning.neurons.surrogate import Surrogate

__all__ = ["lif_multistep", "charge", "reset"]


def charge(v: Tensor, x: Tensor, inv_tau: float | Tensor, v_rest: float, decay_input: bool) -> Tensor:
    """Return the pre-spike membrane ``H[t]`` from ``V[t-1]`` and the input ``X[t]`` (the op order every backend keeps)."""
    if decay_input:
        return v + (x - (v - v_rest)) * inv_tau
    return v - (v - v_rest) * inv_tau + x


def reset(h: Tensor, spikes: Tensor, v_threshold: float, v_reset: float | None) -> Tensor:
    """Return ``V[t]`` after the spikes ``S[t]`` (0/1 in the dtype of ``h``) reset ``H[t]``: hard, or soft if ``v_reset`` is None."""
    if v_reset is None:
        return h - v_threshold * spikes
    return h * (1 - spikes) + v_reset * spikes


def lif_multistep(
    x_seq: Tensor,
    inv_tau: float | Tensor,
    v_threshold: float,
    v_reset: float | None,
    decay_input: bool,
    detach_reset: bool,
    surrogate: Surrogate,
) -> Tensor:
    """Return the spikes ``[T, ...]`` of LIF neurons driven by the input currents ``x_seq [T, ...]``.

    ``inv_tau`` is ``1/tau``: a float, or a tensor broadcastable to one step (learnable leak).
    """
    rest = 0.0 if v_reset is None else v_reset
    # bfloat16/float16 inputs are integrated in a float32 membrane, as in the fused kernels.
    state_dtype = torch.promote_types(x_seq.dtype, torch.float32)
    v = x_seq.new_full(x_seq.shape[1:], rest, dtype=state_dtype)
    spikes = []
    for x in x_seq:
        h = charge(v, x.to(state_dtype), inv_tau, rest, decay_input)
        s = surrogate(h - v_threshold)
        v = reset(h, s.detach() if detach_reset else s, v_threshold, v_reset)
        spikes.append(s)
    return torch.stack(spikes).to(x_seq.dtype)
