"""Multi-step LIF dynamics as one pure function (the reference backend) and the settings it takes.

The faster backends (``fused``: one autograd node running a C++ or PyTorch loop; ``triton``: the
same node running Triton kernels; see :mod:`snn_lightning.neurons.kernels`) replace :func:`lif_multistep`
with the same signature and must match it exactly in spikes and closely in gradients.

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

from dataclasses import dataclass, field

import torch
from torch import Tensor

from snn_lightning.neurons.surrogate import ATan, Surrogate

__all__ = ["LIFSettings", "lif_multistep", "charge", "reset"]


@dataclass(frozen=True)
class LIFSettings:
    """Everything but the input and the leak ``1/tau`` that fixes a LIF layer's dynamics.

    The leak is not a setting: it is an input of the computation (a float, or a learnable
    tensor that receives a gradient), passed beside these settings.
    """

    v_threshold: float = 1.0
    """Membrane potential at which the neuron fires."""
    v_reset: float | None = 0.0
    """Potential after a spike (hard reset); None subtracts the threshold (soft reset)."""
    decay_input: bool = True
    """Scale the input by ``1/tau`` too (SpikingJelly's default) or add it unscaled."""
    detach_reset: bool = False
    """Stop gradients through the reset path, as in SpikingJelly."""
    surrogate: Surrogate = field(default_factory=ATan)
    """Surrogate derivative of the spike in the backward pass."""

    @property
    def v_rest(self) -> float:
        """Return the potential the membrane starts from and leaks towards: ``v_reset``, or 0 for soft reset."""
        return 0.0 if self.v_reset is None else self.v_reset


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


def lif_multistep(x_seq: Tensor, inv_tau: float | Tensor, settings: LIFSettings) -> Tensor:
    """Return the spikes ``[T, ...]`` of LIF neurons driven by the input currents ``x_seq [T, ...]``.

    Per step (the module docstring gives the other variants): ``H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau``,
    ``S[t] = Θ(H[t] - V_th)``, ``V[t] = H[t] (1 - S[t]) + V_reset S[t]``.

    Args:
        x_seq: input currents, time-major ``[T, ...]``.
        inv_tau: the leak ``1/tau``: a float, or a tensor broadcastable to one step (learnable leak).
        settings: threshold, reset, input decay and surrogate of the neurons.

    Soft reset (``v_reset=None``) subtracts the threshold, so no charge above it is lost. An IF
    neuron (leak 0, input added unscaled) driven by 0.75 charges to 0.75, 1.5 (spike, 0.5 left),
    1.25 (spike, 0.25 left), 1.0 (spike).

    >>> import torch
    >>> settings = LIFSettings(v_reset=None, decay_input=False)
    >>> lif_multistep(torch.full((4, 1), 0.75), 0.0, settings).flatten().tolist()
    [0.0, 1.0, 1.0, 1.0]
    """
    rest = settings.v_rest
    # bfloat16/float16 inputs are integrated in a float32 membrane, as in the fused kernels.
    state_dtype = torch.promote_types(x_seq.dtype, torch.float32)
    v = x_seq.new_full(x_seq.shape[1:], rest, dtype=state_dtype)
    spikes = []
    for x in x_seq:
        h = charge(v, x.to(state_dtype), inv_tau, rest, settings.decay_input)
        s = settings.surrogate(h - settings.v_threshold)
        v = reset(h, s.detach() if settings.detach_reset else s, settings.v_threshold, settings.v_reset)
        spikes.append(s)
    return torch.stack(spikes).to(x_seq.dtype)
