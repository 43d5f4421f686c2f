"""ANN ResNets (BasicBlock) used as knowledge-distillation teachers.

Module names follow ``torchvision.models.resnet`` (``conv1``, ``bn1``, ``layer1`` … ``layer4``,
``fc``, ``downsample.0/1``), so with the ImageNet stem a torchvision ``resnet18``/``resnet34``
state_dict loads as is; the CIFAR stem only changes the shape of ``conv1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from snn_lightning.errors import ConfigurationError

__all__ = [
    "ANN_ARCHITECTURES",
    "ANNArchitecture",
    "ANNResNet",
    "BasicBlock",
    "ann_resnet18",
    "ann_resnet34",
    "conv1x1",
    "conv3x3",
    "init_resnet_weights",
]

ANNStem = Literal["cifar", "imagenet"]

# Stage widths of the BasicBlock ResNets (He et al. 2016); each stage after the first halves H, W.
_WIDTHS = (64, 128, 256, 512)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """Return a 3×3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """Return a 1×1 convolution without bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def init_resnet_weights(model: nn.Module) -> None:
    """Initialise in place as torchvision does: Kaiming-normal convs (fan_out, ReLU), BatchNorm weight 1 bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        """
        Args:
            in_channels: channels of the block input.
            out_channels: channels of the block output.
            stride: stride of the first convolution (2 halves H and W).
        """
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        """Return the block output ``[B, out_channels, H/stride, W/stride]``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ANNResNet(nn.Module):
    """ResNet of BasicBlocks in four stages of widths 64–512: images ``[B, C, H, W]`` → logits ``[B, classes]``."""

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[int] = (2, 2, 2, 2),
        in_channels: int = 3,
        stem: ANNStem = "cifar",
        width_multiplier: float = 1.0,
    ) -> None:
        """
        Args:
            num_classes: number of output classes.
            blocks: BasicBlocks per stage, four entries: (2, 2, 2, 2) is ResNet-18, (3, 4, 6, 3) ResNet-34.
            in_channels: channels of the input images (3 for RGB).
            stem: "cifar" conv3×3 stride 1, no max-pool (32×32 inputs); "imagenet" conv7×7/2 + max-pool 3/2.
            width_multiplier: factor applied to every stage width 64–512 (at least 1 channel), for teachers that fit a CPU budget.
        """
        super().__init__()
        if len(blocks) != len(_WIDTHS) or any(count < 1 for count in blocks):
            raise ConfigurationError(
                f"ANNResNet needs one positive block count per stage ({len(_WIDTHS)} stages), got blocks={list(blocks)}"
            )
        if width_multiplier <= 0:
            raise ConfigurationError(f"ANNResNet width_multiplier must be > 0, got {width_multiplier}")
        widths = [max(1, round(width * width_multiplier)) for width in _WIDTHS]
        if stem == "cifar":
            self.conv1 = conv3x3(in_channels, widths[0])
            self.maxpool: nn.Module = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            raise ConfigurationError(f"ANNResNet stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        channels = widths[0]
        for index, (count, width) in enumerate(zip(blocks, widths)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(channels, width, stride)] + [BasicBlock(width, width) for _ in range(count - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_classes = num_classes
        init_resnet_weights(self)
        # Channels-last weights make every convolution emit channels-last activations: on the CPU a
        # bfloat16 training step runs about 1.15x faster (README, "Fashion-MNIST"); checkpoints load either way.
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the last stage's output ``[B, 512·width_multiplier, h, w]`` (before pooling) for images ``[B, C, H, W]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, features: Tensor) -> Tensor:
        """Return logits ``[B, classes]`` from the last stage's output: global average pool, then the FC layer."""
        return self.fc(self.avgpool(features).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``[B, classes]`` for images ``[B, C, H, W]``."""
        return self.forward_head(self.forward_features(x))


def ann_resnet18(
    num_classes: int, in_channels: int = 3, stem: ANNStem = "cifar", width_multiplier: float = 1.0
) -> ANNResNet:
    """Return an ANN ResNet-18 (blocks 2/2/2/2)."""
    return ANNResNet(num_classes, (2, 2, 2, 2), in_channels, stem, width_multiplier)


def ann_resnet34(
    num_classes: int, in_channels: int = 3, stem: ANNStem = "cifar", width_multiplier: float = 1.0
) -> ANNResNet:
    """Return an ANN ResNet-34 (blocks 3/4/6/3)."""
    return ANNResNet(num_classes, (3, 4, 6, 3), in_channels, stem, width_multiplier)


ANN_ARCHITECTURES: dict[str, Callable[..., ANNResNet]] = {
    "resnet18": ann_resnet18,
    "resnet34": ann_resnet34,
}

# The names above as a type, so configs and `--help` list the valid choices.
ANNArchitecture = Literal[tuple(ANN_ARCHITECTURES)]  # type: ignore[valid-type]
