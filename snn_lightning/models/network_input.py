"""The input check every spiking network shares: images or frames in, a time-major sequence out."""

from __future__ import annotations

from torch import Tensor, nn

from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import is_time_major

__all__ = ["as_time_major"]


def as_time_major(x: Tensor, network: nn.Module) -> Tensor:
    """Return ``x`` as ``[T, B, C, H, W]``: frames as they are, images ``[B, C, H, W]`` through ``network.encoder``.

    Raises a ``ValueError`` for other ranks and a ``ConfigurationError`` when the channels differ from
    ``network.in_channels`` or a side is below ``network.min_input_size``.
    """
    name = type(network).__name__
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{name} expects a static image batch [B, C, H, W] or event frames [T, B, C, H, W], "
            f"got a tensor of shape {tuple(x.shape)}; check the data module's output"
        )
    if x.shape[-3] != network.in_channels:
        raise ConfigurationError(
            f"input has {x.shape[-3]} channels (shape {tuple(x.shape)}) but the model was built with "
            f"in_channels={network.in_channels}; set the model's in_channels to {x.shape[-3]}"
        )
    if min(x.shape[-2:]) < network.min_input_size:
        size = network.min_input_size
        raise ConfigurationError(
            f"input images are {x.shape[-2]}×{x.shape[-1]} (shape {tuple(x.shape)}) but this network's stem pools "
            f"by 2 and needs at least {size}×{size}, or its feature maps shrink to "
            f"0×0; use larger images or an architecture with the 3×3 'cifar' stem (resnet_mini, resnet19)"
        )
    return x if is_time_major(x) else network.encoder(x)
