"""Bring your own neuron: a current-based LIF, given to the package's networks as ``model.neuron``.

From the repository root (the CLI imports the config's ``examples.…`` class paths from the working folder):

    snn-lightning fit --config examples/custom_neuron.yaml

A network builds every spiking layer's neuron from the one it is given, through the
:class:`~snn_lightning.neurons.NeuronTemplate` protocol (``build`` and ``for_stage``).
Subclassing :class:`~snn_lightning.neurons.SpikingNeuron` provides both (a deep copy per layer),
plus threshold, reset and surrogate gradient; a new neuron defines its leak ``inv_tau`` and, when
its dynamics differ from LIF, ``forward``: currents ``[T, B, ...]`` to spikes ``[T, B, ...]``,
starting from rest at every call (the package's networks keep no state between batches).
"""

from __future__ import annotations

import torch
from torch import Tensor

from snn_lightning.neurons import SpikingNeuron
from snn_lightning.neurons.surrogate import Surrogate


class SynapticLIF(SpikingNeuron):
    """LIF fed through a synaptic current that decays with its own time constant (current-based LIF).

    Per step: ``I[t] = (1 - 1/tau_syn) I[t-1] + X[t]``, then the LIF charge, fire and reset on ``I[t]``
    with the membrane leak ``1/tau``. An input pulse keeps charging the membrane after it ends:

    >>> pulse = torch.tensor([[1.8], [0.0], [0.0]])  # input at the first step only
    >>> SynapticLIF(tau_syn=4.0)(pulse).flatten().tolist()  # the current lingers: a spike at step 2
    [0.0, 1.0, 0.0]
    >>> SynapticLIF(tau_syn=1.0)(pulse).flatten().tolist()  # no synapse, plain LIF(tau=2): silent
    [0.0, 0.0, 0.0]
    """

    def __init__(
        self,
        tau_syn: float = 2.0,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | None = None,
    ) -> None:
        """
        Args:
            tau_syn: synaptic time constant (>= 1); the current keeps ``1 - 1/tau_syn`` of itself per step (1: no synapse, plain LIF).
            tau: membrane time constant (> 1); the membrane leak per step is ``1/tau``.
            v_threshold: membrane potential at which the neuron fires.
            v_reset: potential after a spike (hard reset); null subtracts the threshold (soft reset).
            surrogate: surrogate derivative for the spike in the backward pass; null means ``ATan(alpha=2.0)``.
        """
        super().__init__(v_threshold, v_reset, decay_input=True, detach_reset=False, surrogate=surrogate)
        if tau_syn < 1.0 or tau <= 1.0:
            raise ValueError(f"SynapticLIF needs tau_syn >= 1 and tau > 1, got tau_syn={tau_syn}, tau={tau}")
        self.tau_syn = float(tau_syn)
        self.tau = float(tau)

    def inv_tau(self) -> float:
        """Return the membrane leak ``1/tau``."""
        return 1.0 / self.tau

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return spikes ``[T, ...]`` for input currents ``[T, ...]``: the synaptic filter, then the package's LIF kernel."""
        keep = 1.0 - 1.0 / self.tau_syn
        current, currents = torch.zeros_like(x_seq[0]), []
        for x in x_seq:
            current = keep * current + x
            currents.append(current)
        return self.multistep(torch.stack(currents), self.inv_tau())

    def extra_repr(self) -> str:
        return f"tau_syn={self.tau_syn}, tau={self.tau}, " + super().extra_repr()
