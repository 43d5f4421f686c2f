"""Spiking dynamics: surrogate gradients and the LIF family (multi-step, stateless)."""

from snn_lightning.neurons.adaptive import AdaptiveLIF
from snn_lightning.neurons.dynamics import lif_multistep
from snn_lightning.neurons.lif import IF, LIF, PLIF, SpikingNeuron
from snn_lightning.neurons.surrogate import ATan, Rectangle, Sigmoid, Surrogate, Triangle

__all__ = [
    "lif_multistep",
    "SpikingNeuron",
    "LIF",
    "PLIF",
    "IF",
    "AdaptiveLIF",
    "Surrogate",
    "ATan",
    "Sigmoid",
    "Rectangle",
    "Triangle",
]
