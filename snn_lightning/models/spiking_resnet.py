"""Spiking ResNets in the tdBN/TET style, as in the FSTA-SNN code (the STAA-SNN backbones).

Layout ``[T, B, C, H, W]``; BatchNorm statistics are shared over time; the residual is added to
the *current* before the block's last neuron, so every layer emits binary spikes and real-valued
sums (BN, residual) only ever feed a neuron. Every neuron is built from one
:class:`~snn_lightning.neurons.NeuronTemplate` (``template.build(channels, time_steps)``), so a
learnable neuron (PLIF) gets its own parameters in every layer.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import (
    DEFAULT_MAX_DENSITY,
    DirectEncoder,
    SpikeConv2d,
    TemporalBatchNorm2d,
    TimeDistributed,
)
from snn_lightning.models.ann_resnet import conv1x1, init_resnet_weights
from snn_lightning.models.network_input import as_time_major
from snn_lightning.neurons import LIF, BuildNeuron, NeuronTemplate

__all__ = [
    "SPIKING_RESNETS",
    "SpikingBasicBlock",
    "conv_bn_neuron",
    "spiking_downsample",
    "SpikingResNet",
    "spiking_resnet18",
    "spiking_resnet19",
    "spiking_resnet20",
    "spiking_resnet34",
    "spiking_resnet_mini",
]

StemKind = Literal["cifar", "cifar_deep", "imagenet"]
DownsampleKind = Literal["conv", "avgpool_conv"]


@contextlib.contextmanager
def _restoring_buffers(module: nn.Module) -> Iterator[None]:
    """Run the body, then put back the module's buffers, so a block recomputed in backward leaves BN's running statistics as they were."""
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:  # also when checkpoint stops the recomputation early by raising
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def conv_bn_neuron(
    in_channels: int, out_channels: int, build_neuron: BuildNeuron, kernel_size: int = 3, stride: int = 1
) -> list[nn.Module]:
    """Return [conv, BN over time, neuron]: one spiking layer from currents or spikes to spikes."""
    conv = SpikeConv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)
    return [TimeDistributed(conv), TemporalBatchNorm2d(out_channels), build_neuron(out_channels)]


def spiking_downsample(in_channels: int, out_channels: int, stride: int, kind: DownsampleKind) -> nn.Sequential:
    """Return the shortcut projection ``[T,B,C_in,H,W]`` → currents ``[T,B,C_out,H/stride,W/stride]``.

    ``"conv"`` is a strided 1×1 conv + BN (tdBN, TET); ``"avgpool_conv"`` averages each
    ``stride×stride`` window first and then applies a stride-1 1×1 conv + BN (FSTA ResNet-20),
    so the shortcut sees every input position instead of one in ``stride²``.
    """
    layers: list[nn.Module] = []
    if kind == "conv":
        layers.append(TimeDistributed(conv1x1(in_channels, out_channels, stride)))
    elif kind == "avgpool_conv":
        if stride != 1:
            # ceil_mode matches the residual branch's strided 3×3 conv, which also gives ceil(H / stride).
            layers.append(TimeDistributed(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)))
        layers.append(TimeDistributed(conv1x1(in_channels, out_channels)))
    else:
        raise ConfigurationError(f"downsample must be 'conv' or 'avgpool_conv', got {kind!r}")
    layers.append(TemporalBatchNorm2d(out_channels))
    return nn.Sequential(*layers)


class SpikingBasicBlock(nn.Module):
    """Spiking basic block: ``spikes = neuron(BN(conv(neuron(BN(conv(x))))) + shortcut(x))``.

    The shortcut carries the input spikes (or their projection's currents) and is added to the
    current of the second branch before the last neuron, as in tdBN and TET, so the output is binary.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        downsample: nn.Module | None,
        build_neuron: BuildNeuron,
    ) -> None:
        """
        Args:
            in_channels: channels of the input spikes.
            out_channels: channels of the output spikes.
            stride: stride of the first convolution (2 halves H and W).
            downsample: shortcut projection when shape changes; None keeps the identity shortcut.
            build_neuron: returns a fresh neuron for a layer with the given channel count.
        """
        super().__init__()
        self.conv1 = TimeDistributed(SpikeConv2d(in_channels, out_channels, 3, stride, padding=1, bias=False))
        self.bn1 = TemporalBatchNorm2d(out_channels)
        self.neuron1 = build_neuron(out_channels)
        self.conv2 = TimeDistributed(SpikeConv2d(out_channels, out_channels, 3, padding=1, bias=False))
        self.bn2 = TemporalBatchNorm2d(out_channels)
        self.downsample = downsample
        self.neuron2 = build_neuron(out_channels)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return output spikes ``[T, B, out_channels, H/stride, W/stride]`` for input spikes ``[T, B, C, H, W]``."""
        identity = x_seq if self.downsample is None else self.downsample(x_seq)
        out = self.neuron1(self.bn1(self.conv1(x_seq)))
        out = self.bn2(self.conv2(out))
        return self.neuron2(out + identity)


class SpikingResNet(nn.Module):
    """Spiking ResNet: images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]`` → per-step logits ``[T, B, classes]``.

    Static images are repeated ``time_steps`` times (direct encoding) and the first convolution
    turns them into currents. Event frames ``[T, B, C, H, W]`` are used as they come: their T is
    set by the data, not by ``time_steps``. The readout averages the last stage's spikes over
    H and W and applies one linear layer at every step; the prediction is the argmax of the mean
    logits over T.
    """

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[int] = (3, 3, 2),
        widths: Sequence[int] = (128, 256, 512),
        strides: Sequence[int] = (1, 2, 2),
        stem: StemKind = "cifar",
        downsample: DownsampleKind = "conv",
        in_channels: int = 3,
        time_steps: int = 4,
        width_multiplier: float = 1.0,
        neuron: NeuronTemplate | None = None,
        checkpoint_blocks: bool = False,
        spike_conv_max_density: float = DEFAULT_MAX_DENSITY,
    ) -> None:
        """
        Args:
            num_classes: number of output classes.
            blocks: number of basic blocks in each stage (the defaults build ResNet-19).
            widths: output channels of each stage, before ``width_multiplier``; the stem has the first stage's width.
            strides: stride of each stage's first block (2 halves H and W).
            stem: "cifar" conv3×3; "cifar_deep" 3× conv3×3 + AvgPool 2 (FSTA); "imagenet" conv7×7/2 + AvgPool 3/2.
            downsample: shortcut projection: "conv" strided 1×1 conv + BN; "avgpool_conv" AvgPool, then 1×1 conv + BN.
            in_channels: channels of the input (3 for RGB images, 2 for DVS polarity frames).
            time_steps: number of steps T a static image is repeated for (event frames bring their own T).
            width_multiplier: factor applied to every width (at least 1 channel), for small models and tests.
            neuron: neuron template every spiking layer's neuron is built from, per stage; null means ``LIF()``.
            checkpoint_blocks: in training keep only each residual block's input and recompute the block in backward (less memory, ~1/3 more time).
            spike_conv_max_density: the 3×3 convolutions compute from their nonzero inputs (CPU) when at most this fraction is nonzero; 0 turns that off.
        """
        super().__init__()
        if not len(blocks) == len(widths) == len(strides) or not blocks:
            raise ConfigurationError(
                f"blocks, widths and strides need one entry per stage and the same length, got "
                f"blocks={list(blocks)}, widths={list(widths)}, strides={list(strides)}"
            )
        if any(value < 1 for value in (*blocks, *widths, *strides)):
            raise ConfigurationError(
                f"blocks, widths and strides must be positive, got blocks={list(blocks)}, "
                f"widths={list(widths)}, strides={list(strides)}"
            )
        if width_multiplier <= 0:
            raise ConfigurationError(f"width_multiplier must be > 0, got {width_multiplier}")
        template = LIF() if neuron is None else neuron
        if not isinstance(template, NeuronTemplate):
            raise ConfigurationError(
                f"neuron must be a neuron template with build(channels, time_steps) and for_stage(stage, num_stages) "
                f"(LIF, PLIF, IF, AdaptiveLIF, STAA), got {type(template).__name__}"
            )
        scaled = [max(1, round(width * width_multiplier)) for width in widths]
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.checkpoint_blocks = checkpoint_blocks
        self.encoder = DirectEncoder(time_steps)
        # The FSTA stem ends in a 2×2 average pool, which shrinks a 1-pixel side to nothing.
        self.min_input_size = 2 if stem == "cifar_deep" else 1
        build_stem_neuron = functools.partial(template.for_stage(0, len(blocks)).build, time_steps=time_steps)
        self.stem = self._make_stem(stem, in_channels, scaled[0], build_stem_neuron)
        stages = []
        channels = scaled[0]
        for index, (count, width, stride) in enumerate(zip(blocks, scaled, strides), start=1):
            build_neuron = functools.partial(template.for_stage(index, len(blocks)).build, time_steps=time_steps)
            shortcut = None
            if stride != 1 or channels != width:
                shortcut = spiking_downsample(channels, width, stride, downsample)
            stage = [SpikingBasicBlock(channels, width, stride, shortcut, build_neuron)]
            stage += [SpikingBasicBlock(width, width, 1, None, build_neuron) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.feature_channels = channels
        self.fc = nn.Linear(channels, num_classes)
        init_resnet_weights(self)
        for module in self.modules():
            if isinstance(module, SpikeConv2d):
                module.max_density = spike_conv_max_density
        # Channels-last weights make every dense convolution (stem, shortcuts) emit channels-last
        # activations too, the layout of the spike-driven ones: faster convolutions and BatchNorm, no copies.
        self.to(memory_format=torch.channels_last)

    @staticmethod
    def _make_stem(kind: StemKind, in_channels: int, width: int, build_neuron: BuildNeuron) -> nn.Sequential:
        """Return the stem mapping the input sequence to spikes with ``width`` channels."""
        if kind == "cifar":
            return nn.Sequential(*conv_bn_neuron(in_channels, width, build_neuron))
        if kind == "cifar_deep":
            layers = conv_bn_neuron(in_channels, width, build_neuron)
            layers += conv_bn_neuron(width, width, build_neuron) + conv_bn_neuron(width, width, build_neuron)
            return nn.Sequential(*layers, TimeDistributed(nn.AvgPool2d(2)))
        if kind == "imagenet":
            layers = conv_bn_neuron(in_channels, width, build_neuron, kernel_size=7, stride=2)
            return nn.Sequential(*layers, TimeDistributed(nn.AvgPool2d(3, 2, 1)))
        raise ConfigurationError(f"stem must be 'cifar', 'cifar_deep' or 'imagenet', got {kind!r}")

    @property
    def time_steps(self) -> int:
        """Number of steps T a static image ``[B, C, H, W]`` is repeated for."""
        return self.encoder.time_steps

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the last stage's spikes ``[T, B, C, h, w]`` (before pooling) for ``[B,C,H,W]`` or ``[T,B,C,H,W]``."""
        features = self.stem(as_time_major(x, self))
        if not (self.checkpoint_blocks and torch.is_grad_enabled()):
            return self.stages(features)
        for stage in self.stages:
            for block in stage:
                features = checkpoint(
                    block,
                    features,
                    use_reentrant=False,
                    context_fn=lambda block=block: (contextlib.nullcontext(), _restoring_buffers(block)),
                )
        return features

    def forward_head(self, features: Tensor) -> Tensor:
        """Return per-step logits ``[T, B, classes]`` from the last stage's spikes: spatial mean, then the FC layer."""
        return self.fc(features.mean(dim=(-2, -1)))

    def forward(self, x: Tensor) -> Tensor:
        """Return per-step logits ``[T, B, classes]`` for images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]``."""
        return self.forward_head(self.forward_features(x))


# Layer plans of the named networks; the remaining SpikingResNet arguments come from the caller.
_LAYOUTS: dict[str, dict] = {
    "resnet19": dict(blocks=(3, 3, 2), widths=(128, 256, 512), strides=(1, 2, 2), stem="cifar", downsample="conv"),
    "resnet20": dict(
        blocks=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        strides=(1, 2, 2, 2),
        stem="cifar_deep",
        downsample="avgpool_conv",
    ),
    "resnet18": dict(
        blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), strides=(1, 2, 2, 2), stem="imagenet", downsample="conv"
    ),
    "resnet34": dict(
        blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512), strides=(1, 2, 2, 2), stem="imagenet", downsample="conv"
    ),
    "resnet_mini": dict(blocks=(1, 1), widths=(32, 64), strides=(1, 2), stem="cifar", downsample="conv"),
}


def spiking_resnet19(num_classes: int, **options: Any) -> SpikingResNet:
    """Return the CIFAR ResNet-19 (tdBN, TET, STAA-SNN): conv3×3 128 stem, stages 3/3/2 of widths 128/256/512."""
    return SpikingResNet(num_classes, **_LAYOUTS["resnet19"], **options)


def spiking_resnet20(num_classes: int, **options: Any) -> SpikingResNet:
    """Return FSTA-SNN's ResNet-20 variant (CIFAR-10, DVS): 3× conv3×3 + AvgPool 2 stem, stages 2/2/2/2, 64–512."""
    return SpikingResNet(num_classes, **_LAYOUTS["resnet20"], **options)


def spiking_resnet18(num_classes: int, **options: Any) -> SpikingResNet:
    """Return the ImageNet spiking ResNet-18: conv7×7/2 64 stem + AvgPool(3, 2, 1), stages 2/2/2/2 of 64–512.

    The stem pools with an average, not torchvision's max: average pooling is linear, so it
    merges with the next convolution into one weighted sum over binary spikes (accumulates
    only), keeping the network spike-driven: ``EnergyEstimate`` counts that convolution's SOPs
    at the pooled spikes' rate (``pooled_spikes="mac"`` charges it MACs instead).
    """
    return SpikingResNet(num_classes, **_LAYOUTS["resnet18"], **options)


def spiking_resnet34(num_classes: int, **options: Any) -> SpikingResNet:
    """Return the ImageNet spiking ResNet-34: as :func:`spiking_resnet18` (AvgPool stem) with stages 3/4/6/3."""
    return SpikingResNet(num_classes, **_LAYOUTS["resnet34"], **options)


def spiking_resnet_mini(num_classes: int, **options: Any) -> SpikingResNet:
    """Return a small spiking ResNet for tiny inputs (8×8 digits, CPU quickstart): stages 1/1 of widths 32/64."""
    return SpikingResNet(num_classes, **_LAYOUTS["resnet_mini"], **options)


SPIKING_RESNETS: dict[str, Callable[..., SpikingResNet]] = {
    "resnet_mini": spiking_resnet_mini,
    "resnet19": spiking_resnet19,
    "resnet20": spiking_resnet20,
    "resnet18": spiking_resnet18,
    "resnet34": spiking_resnet34,
}
