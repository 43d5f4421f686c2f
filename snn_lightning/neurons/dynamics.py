"""Multi-step LIF dynamics as one pure function (the reference backend).

A faster backend (fused CPU loop, Triton kernel) replaces :func:`lif_multistep` with the same
signature and must match it exactly in spikes and closely in gradients.

Per neuron, ``t = 1..T`` (SpikingJelly's convention):

* charge ``H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) * k`` (``decay_input``) or
  ``H[t] = V[t-1] - (V[t-1] - V_reset) * k + X[t]``, where ``k = 1/tau``;
* fire ``S[t] = Θ(H[t] - V_th)`` (surrogate gradient backward);
* reset: hard ``V[t] = H[t] (1 - S[t]) + V_reset S[t]``; soft (``v_reset=None``)
  ``V[t] = H[t] - V_th S[t]``.

The membrane starts at ``V_reset`` (0 for soft reset). ``k = 0`` with ``decay_input=False``
is the integrate-and-fire neuron.
"""

from __future__ import annotations

import torch
from torch import Tensor

from snn_lightning.neurons.surrogate import Surrogate

__all__ = ["lif_multistep"]


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
    v = x_seq.new_full(x_seq.shape[1:], rest)
    spikes = []
    for x in x_seq:
        if decay_input:
            h = v + (x - (v - rest)) * inv_tau
        else:
            h = v - (v - rest) * inv_tau + x
        s = surrogate(h - v_threshold)
        s_reset = s.detach() if detach_reset else s
        if v_reset is None:
            v = h - v_threshold * s_reset
        else:
            v = h * (1 - s_reset) + v_reset * s_reset
        spikes.append(s)
    return torch.stack(spikes)
