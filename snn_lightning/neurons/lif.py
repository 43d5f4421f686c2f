"""Multi-step spiking neuron modules: LIF, PLIF (learnable tau) and IF.

Each module maps input currents ``[T, ...]`` to binary spikes ``[T, ...]`` and keeps no state
between calls: every forward starts from the resting membrane. The dynamics live in
:func:`snn_lightning.neurons.dynamics.lif_multistep`; the modules only hold parameters and the
``backend`` that computes them (:mod:`snn_lightning.neurons.kernels`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from snn_lightning.neurons.kernels.dispatch import Backend, check_backend, lif_multistep_backend
from snn_lightning.neurons.surrogate import ATan, Surrogate

__all__ = ["SpikingNeuron", "LIF", "PLIF", "IF"]


class SpikingNeuron(nn.Module):
    """Base of the LIF family: threshold, reset and surrogate; subclasses define the leak ``1/tau``."""

    decay_input: bool = True

    def __init__(
        self,
        v_threshold: float,
        v_reset: float | None,
        detach_reset: bool,
        surrogate: Surrogate | None,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        check_backend(backend)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = detach_reset
        self.surrogate = ATan() if surrogate is None else surrogate
        self.backend = backend

    def inv_tau(self) -> float | Tensor:
        """Return the leak ``1/tau`` used in the charge equation."""
        raise NotImplementedError

    def multistep(self, x_seq: Tensor, inv_tau: float | Tensor) -> Tensor:
        """Return spikes ``[T, ...]`` for input currents ``[T, ...]`` and leak ``inv_tau``, on this neuron's backend."""
        return lif_multistep_backend(
            x_seq,
            inv_tau,
            self.v_threshold,
            self.v_reset,
            self.decay_input,
            self.detach_reset,
            self.surrogate,
            self.backend,
        )

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return spikes ``[T, ...]`` for input currents ``[T, ...]``."""
        return self.multistep(x_seq, self.inv_tau())

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, decay_input={self.decay_input}, "
            f"detach_reset={self.detach_reset}, surrogate={self.surrogate}, backend={self.backend!r}"
        )


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron with a fixed time constant ``tau``."""

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: Surrogate | None = None,
        backend: Backend = "auto",
    ) -> None:
        """
        Args:
            tau: membrane time constant (> 1); the leak per step is ``1/tau``.
            v_threshold: membrane potential at which the neuron fires.
            v_reset: potential after a spike (hard reset); null subtracts the threshold (soft reset).
            decay_input: scale the input by ``1/tau`` too (SpikingJelly's default) or add it unscaled.
            detach_reset: stop gradients through the reset path, as in SpikingJelly.
            surrogate: surrogate derivative for the spike in the backward pass; null means ``ATan(alpha=2.0)``.
            backend: "reference" loop, "fused" node (C++ kernel on CPU), "triton" (CUDA), or "auto" (triton on CUDA, else fused).
        """
        super().__init__(v_threshold, v_reset, detach_reset, surrogate, backend)
        if tau <= 1.0:
            raise ValueError(f"LIF tau must be > 1 so the leak 1/tau lies in (0, 1), got tau={tau}")
        self.tau = float(tau)
        self.decay_input = decay_input

    def inv_tau(self) -> float:
        return 1.0 / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, " + super().extra_repr()


class PLIF(SpikingNeuron):
    """Parametric LIF (Fang et al. 2021): leak ``1/tau = sigmoid(w)``, ``w`` learned, one per layer."""

    def __init__(
        self,
        init_tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: Surrogate | None = None,
        backend: Backend = "auto",
    ) -> None:
        """
        Args:
            init_tau: initial membrane time constant (> 1); learned during training.
            v_threshold: membrane potential at which the neuron fires.
            v_reset: potential after a spike (hard reset); null subtracts the threshold (soft reset).
            decay_input: scale the input by ``1/tau`` too or add it unscaled.
            detach_reset: stop gradients through the reset path.
            surrogate: surrogate derivative for the spike in the backward pass; null means ``ATan(alpha=2.0)``.
            backend: "reference" loop, "fused" node (C++ kernel on CPU), "triton" (CUDA), or "auto" (triton on CUDA, else fused).
        """
        super().__init__(v_threshold, v_reset, detach_reset, surrogate, backend)
        if init_tau <= 1.0:
            raise ValueError(f"PLIF init_tau must be > 1, got {init_tau}")
        self.decay_input = decay_input
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    @property
    def tau(self) -> float:
        """Current time constant ``1 / sigmoid(w)``."""
        return 1.0 / torch.sigmoid(self.w.detach()).item()

    def inv_tau(self) -> Tensor:
        return torch.sigmoid(self.w)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4f} (learned), " + super().extra_repr()


class IF(SpikingNeuron):
    """Integrate-and-fire neuron: no leak, ``H[t] = V[t-1] + X[t]``."""

    decay_input = False

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = False,
        surrogate: Surrogate | None = None,
        backend: Backend = "auto",
    ) -> None:
        """
        Args:
            v_threshold: membrane potential at which the neuron fires.
            v_reset: potential after a spike (hard reset); null subtracts the threshold (soft reset).
            detach_reset: stop gradients through the reset path.
            surrogate: surrogate derivative for the spike in the backward pass; null means ``ATan(alpha=2.0)``.
            backend: "reference" loop, "fused" node (C++ kernel on CPU), "triton" (CUDA), or "auto" (triton on CUDA, else fused).
        """
        super().__init__(v_threshold, v_reset, detach_reset, surrogate, backend)

    def inv_tau(self) -> float:
        return 0.0
