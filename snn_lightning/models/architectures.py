"""Every spiking network by name: the ResNets (CIFAR, ImageNet, DVS), the plain CNNs for small images and the FC network for audio spikes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from snn_lightning.errors import ConfigurationError
from snn_lightning.models.spiking_convnet import CONVNET_LAYOUTS, SpikingConvNet
from snn_lightning.models.spiking_resnet import SPIKING_RESNETS

__all__ = ["SPIKING_ARCHITECTURES", "SpikingArchitecture"]


def _convnet(layout: str, num_classes: int, checkpoint_blocks: bool = False, **options: Any) -> SpikingConvNet:
    """Return the plain spiking CNN ``layout`` of :data:`CONVNET_LAYOUTS`; refuse block checkpointing, which needs residual blocks."""
    if checkpoint_blocks:
        raise ConfigurationError(
            f"checkpoint_blocks recomputes residual blocks, and {layout} has none; set model.checkpoint_blocks false"
        )
    return SpikingConvNet(num_classes, **CONVNET_LAYOUTS[layout], **options)


# Name → factory(num_classes, **options); ``SNNClassifier(arch=...)`` picks from these.
SPIKING_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    **SPIKING_RESNETS,
    **{name: functools.partial(_convnet, name) for name in CONVNET_LAYOUTS},
}

# The names above as a type, so configs and `--help` list the valid choices.
SpikingArchitecture = Literal[tuple(SPIKING_ARCHITECTURES)]  # type: ignore[valid-type]
