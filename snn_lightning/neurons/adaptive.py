"""Adaptive LIF (STAA-SNN): learnable per-channel leak and input coefficients on the core LIF dynamics.

Per channel ``c`` (hard reset to ``V_reset``; soft reset as in :mod:`snn_lightning.neurons.dynamics`):

    H[t] = M_c (V[t-1] - V_reset) + V_reset + N_c X[t],   M_c = sigmoid(m_c) in (0, 1)

which is :func:`~snn_lightning.neurons.dynamics.lif_multistep` without input decay, with the
leak ``1/tau = 1 - M_c`` and the input pre-scaled by ``N_c``; a faster LIF kernel speeds it up too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from snn_lightning.neurons.kernels.dispatch import Backend
from snn_lightning.neurons.lif import SpikingNeuron
from snn_lightning.neurons.surrogate import Surrogate

__all__ = ["AdaptiveLIF"]


class AdaptiveLIF(SpikingNeuron):
    """LIF with a learnable leak ``M`` (kept in (0, 1)) and input scale ``N``, one pair per channel.

    Per channel c: ``H[t] = M_c (V[t-1] - V_reset) + V_reset + N_c X[t]``, ``M_c = sigmoid(m_c)``, then fire and
    reset as LIF.

    Used as a neuron template (``SNNClassifier(neuron=AdaptiveLIF())`` or inside ``STAA``), the
    network calls :meth:`build` for each layer (see :class:`~snn_lightning.neurons.NeuronTemplate`),
    which gives every layer one ``(M, N)`` per channel.
    The defaults ``M = N = 0.5`` start as ``LIF(tau=2.0)``; FSTA-SNN's neuron is ``M = 0.25, N = 1``
    with ``v_threshold=0.5``.

    >>> import torch
    >>> layer = AdaptiveLIF().build(channels=3, time_steps=4)  # one (M, N) pair per channel
    >>> layer.leak.tolist()
    [0.5, 0.5, 0.5]
    >>> layer(torch.full((4, 2, 3, 5, 5), 1.5)).mean(dim=(1, 2, 3, 4)).tolist()  # as LIF(tau=2.0)
    [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        channels: int = 1,
        init_leak: float = 0.5,
        init_input_scale: float = 0.5,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = False,
        surrogate: Surrogate | None = None,
        backend: Backend = "auto",
    ) -> None:
        """
        Args:
            channels: number of channels (dim 2 of ``[T, B, C, ...]``) with their own M and N; 1 shares one pair.
            init_leak: initial membrane leak M in (0, 1); the membrane keeps this fraction per step.
            init_input_scale: initial input coefficient N.
            v_threshold: membrane potential at which the neuron fires.
            v_reset: potential after a spike (hard reset); null subtracts the threshold (soft reset).
            detach_reset: stop gradients through the reset path.
            surrogate: surrogate derivative for the spike in the backward pass; null means ``ATan(alpha=2.0)``.
            backend: "reference" loop, "fused" node (C++ kernel on CPU), "triton" (CUDA), or "auto" (triton on CUDA, else fused).
        """
        super().__init__(v_threshold, v_reset, False, detach_reset, surrogate, backend)
        if channels < 1:
            raise ValueError(f"AdaptiveLIF channels must be >= 1, got {channels}")
        if not 0.0 < init_leak < 1.0:
            raise ValueError(f"AdaptiveLIF init_leak must lie in (0, 1), got {init_leak}")
        self.channels = channels
        self.init_leak = float(init_leak)
        self.init_input_scale = float(init_input_scale)
        logit = math.log(init_leak / (1.0 - init_leak))
        self.leak_logit = nn.Parameter(torch.full((channels,), logit))
        self.input_scale = nn.Parameter(torch.full((channels,), self.init_input_scale))

    def build(self, channels: int, time_steps: int) -> AdaptiveLIF:
        """Return a fresh neuron with this one's settings and one ``(M, N)`` pair per each of ``channels``.

        Args:
            channels: channels of the layer, each with its own ``(M, N)``.
            time_steps: steps T of the network; the neuron has no per-step parameters and ignores it.
        """
        return AdaptiveLIF(
            channels,
            self.init_leak,
            self.init_input_scale,
            self.v_threshold,
            self.v_reset,
            self.detach_reset,
            self.surrogate,
            self.backend,
        )

    @property
    def leak(self) -> Tensor:
        """Current leak ``M = sigmoid(leak_logit)`` per channel (detached)."""
        return torch.sigmoid(self.leak_logit.detach())

    def _per_channel(self, values: Tensor, x_seq: Tensor) -> Tensor:
        """Return ``values [C]`` shaped to broadcast over one step ``[B, C, ...]`` of ``x_seq``."""
        if x_seq.ndim < 3 or self.channels not in (1, x_seq.shape[2]):
            raise ValueError(
                f"AdaptiveLIF has {self.channels} channels but got input of shape {tuple(x_seq.shape)}; "
                f"expected [T, B, {self.channels}, ...] (build it with AdaptiveLIF.build(channels, time_steps))"
            )
        return values.view(-1, *([1] * (x_seq.ndim - 3)))

    def inv_tau(self) -> Tensor:
        """Return ``1 - M = sigmoid(-leak_logit)`` per channel, the leak term of :func:`lif_multistep`."""
        return torch.sigmoid(-self.leak_logit)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return spikes ``[T, B, C, ...]`` for input currents ``[T, B, C, ...]``."""
        return self.multistep(
            x_seq * self._per_channel(self.input_scale, x_seq), self._per_channel(self.inv_tau(), x_seq)
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, " + super().extra_repr()
