"""The neuron template: what a network takes as its ``neuron`` and builds every spiking layer's neuron from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from torch import nn

__all__ = ["NeuronTemplate", "BuildNeuron"]

# A layer's neuron built from its channel count (a network's `build_neuron` argument): a stage's template with
# the network's T bound, ``functools.partial(template.for_stage(stage, num_stages).build, time_steps=time_steps)``.
BuildNeuron = Callable[[int], nn.Module]


@runtime_checkable
class NeuronTemplate(Protocol):
    """A recipe for a network's spiking layers: one fresh module per layer, possibly another recipe per stage.

    Every :class:`~snn_lightning.neurons.SpikingNeuron` is one (a deep copy per layer, the same
    recipe in every stage); ``AdaptiveLIF`` builds one leak per channel, and STAA's aggregator
    (``snn_lightning.models.STAA``) builds attention around a neuron, in chosen stages only.
    """

    def build(self, channels: int, time_steps: int) -> nn.Module:
        """Return a fresh neuron for a layer (currents ``[T, B, channels, ...]`` to spikes) owning its own parameters.

        Args:
            channels: channels of the layer the neuron follows.
            time_steps: steps T the network runs for; sizes per-step parameters the template leaves unset.
        """
        ...

    def for_stage(self, stage: int, num_stages: int) -> NeuronTemplate:
        """Return the template for the layers of ``stage``.

        Args:
            stage: 0 for the stem, 1 to ``num_stages`` for the residual stages.
            num_stages: number of residual stages of the network.
        """
        ...
