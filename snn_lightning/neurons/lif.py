"""Multi-step spiking neuron modules: LIF, PLIF (learnable tau) and IF.

Each module maps input currents ``[T, ...]`` to binary spikes ``[T, ...]`` and keeps no state
between calls: every forward starts from the resting membrane. The dynamics live in
:func:`snn_lightning.neurons.dynamics.lif_multistep`; the modules only hold parameters and the
``backend`` that computes them (:mod:`snn_lightning.neurons.kernels`).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from snn_lightning.neurons.dynamics import LIFSettings
from snn_lightning.neurons.kernels.dispatch import Backend, check_backend, lif_multistep_backend
from snn_lightning.neurons.surrogate import ATan, Surrogate

__all__ = ["SpikingNeuron", "LIF", "PLIF", "IF"]


class SpikingNeuron(nn.Module):
    """Base of the LIF family: threshold, reset and surrogate; subclasses define the leak ``1/tau``.

    A neuron is also a :class:`~snn_lightning.neurons.template.NeuronTemplate`: a network given
    one as its ``neuron`` builds each layer's neuron as a deep copy of it.
    """

    def __init__(
        self,
        v_threshold: float,
        v_reset: float | None,
        decay_input: bool,
        detach_reset: bool,
        surrogate: Surrogate | None,
        backend: Backend = "auto",
    ) -> None:
        """
        Args:
            v_threshold: membrane potential at which the neuron fires.
            v_reset: potential after a spike (hard reset); None subtracts the threshold (soft reset).
            decay_input: scale the input by ``1/tau`` too or add it unscaled.
            detach_reset: stop gradients through the reset path.
            surrogate: surrogate derivative for the spike in the backward pass; None means ``ATan(alpha=2.0)``.
            backend: one of :data:`~snn_lightning.neurons.kernels.BACKENDS`.
        """
        super().__init__()
        check_backend(backend)
        self.settings = LIFSettings(
            float(v_threshold),
            None if v_reset is None else float(v_reset),
            decay_input,
            detach_reset,
            ATan() if surrogate is None else surrogate,
        )
        self.backend = backend

    @property
    def v_threshold(self) -> float:
        """Membrane potential at which the neuron fires."""
        return self.settings.v_threshold

    @property
    def v_reset(self) -> float | None:
        """Potential after a spike (hard reset); None for soft reset."""
        return self.settings.v_reset

    @property
    def decay_input(self) -> bool:
        """Whether the input is scaled by ``1/tau`` too."""
        return self.settings.decay_input

    @property
    def detach_reset(self) -> bool:
        """Whether gradients through the reset path are stopped."""
        return self.settings.detach_reset

    @property
    def surrogate(self) -> Surrogate:
        """Surrogate derivative of the spike in the backward pass."""
        return self.settings.surrogate

    def inv_tau(self) -> float | Tensor:
        """Return the leak ``1/tau`` used in the charge equation."""
        raise NotImplementedError

    def build(self, channels: int, time_steps: int) -> SpikingNeuron:
        """Return a deep copy of this neuron, with parameters of its own, for any layer.

        Args:
            channels: channels of the layer; a neuron with one leak for the whole layer ignores it.
            time_steps: steps T of the network; the neuron has no per-step parameters and ignores it.
        """
        return copy.deepcopy(self)

    def for_stage(self, stage: int, num_stages: int) -> SpikingNeuron:
        """Return this neuron: it serves every stage."""
        return self

    def multistep(self, x_seq: Tensor, inv_tau: float | Tensor) -> Tensor:
        """Return spikes ``[T, ...]`` for input currents ``[T, ...]`` and leak ``inv_tau``, on this neuron's backend."""
        return lif_multistep_backend(x_seq, inv_tau, self.settings, self.backend)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return spikes ``[T, ...]`` for input currents ``[T, ...]``."""
        return self.multistep(x_seq, self.inv_tau())

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, decay_input={self.decay_input}, "
            f"detach_reset={self.detach_reset}, surrogate={self.surrogate}, backend={self.backend!r}"
        )


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron with a fixed time constant ``tau``.

    With ``tau = 2`` a constant input of 1.5 charges the membrane to 0.75, then 1.125 (a spike and
    a reset to 0), and so on: a spike every second step.

    >>> import torch
    >>> LIF(tau=2.0)(torch.full((4, 1), 1.5)).flatten().tolist()
    [0.0, 1.0, 0.0, 1.0]
    """

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
        super().__init__(v_threshold, v_reset, decay_input, detach_reset, surrogate, backend)
        if tau <= 1.0:
            raise ValueError(f"LIF tau must be > 1 so the leak 1/tau lies in (0, 1), got tau={tau}")
        self.tau = float(tau)

    def inv_tau(self) -> float:
        return 1.0 / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, " + super().extra_repr()


class PLIF(SpikingNeuron):
    """Parametric LIF (Fang et al. 2021): leak ``1/tau = sigmoid(w)``, ``w`` learned, one per layer.

    >>> neuron = PLIF(init_tau=2.0)
    >>> round(neuron.tau, 4), [name for name, _ in neuron.named_parameters()]
    (2.0, ['w'])
    """

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
        super().__init__(v_threshold, v_reset, decay_input, detach_reset, surrogate, backend)
        if init_tau <= 1.0:
            raise ValueError(f"PLIF init_tau must be > 1, got {init_tau}")
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
    """Integrate-and-fire neuron: no leak, ``H[t] = V[t-1] + X[t]``.

    >>> import torch
    >>> IF()(torch.full((4, 1), 0.6)).flatten().tolist()  # 0.6, 1.2 (spike, reset to 0), 0.6, 1.2
    [0.0, 1.0, 0.0, 1.0]
    """

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
        super().__init__(v_threshold, v_reset, False, detach_reset, surrogate, backend)

    def inv_tau(self) -> float:
        return 0.0
