"""Spiking dynamics: surrogate gradients, the LIF family (multi-step, stateless) and the neuron template."""

from snn_lightning.neurons.adaptive import AdaptiveLIF
from snn_lightning.neurons.dynamics import LIFSettings, lif_multistep
from snn_lightning.neurons.lif import IF, LIF, PLIF, SpikingNeuron
from snn_lightning.neurons.surrogate import ATan, Rectangle, Sigmoid, Surrogate, Triangle
from snn_lightning.neurons.template import BuildNeuron, NeuronTemplate

__all__ = [
    "lif_multistep",
    "LIFSettings",
    "NeuronTemplate",
    "BuildNeuron",
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
