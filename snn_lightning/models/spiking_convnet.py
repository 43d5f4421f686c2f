"""Plain spiking CNNs for small images (28×28, 32×32): conv-BN-neuron layers with pooling, spiking FC layers, a linear readout; an FC-only one for audio spikes.

The networks of the direct-training papers on (Fashion-)MNIST and the short hand-written baselines:
``convnet2`` (conv 32, 64 with 2×2 max-pooling, FC 256; the 2-conv spiking CNN many tutorials
train), ``plif_net`` (Fang et al., ICCV 2021, the PLIF paper's (Fashion-)MNIST network: two conv 128
with pooling, dropout, FC 2048) and ``vgg_small`` (a VGG-style stack 64-64-M-128-128-M-256-256-M,
FC 512). Unlike a ResNet's global mean, the readout keeps a small spatial map
(``head_grid``×``head_grid``) of the last spikes, which is where most of the accuracy on 28×28
images comes from (README, "Why the quickstart trained to 75 %"). ``shd_mlp`` has no conv layers:
spiking FC 256, 256 on the 700 channels of SHD's and SSC's frames ``[700, 1, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import DEFAULT_MAX_DENSITY, DirectEncoder, SpikeConv2d, TimeDistributed
from snn_lightning.models.ann_resnet import init_resnet_weights
from snn_lightning.models.network_input import as_time_major
from snn_lightning.models.spiking_resnet import conv_bn_neuron
from snn_lightning.neurons import LIF, NeuronTemplate

__all__ = ["CONVNET_LAYOUTS", "SpikingConvNet", "TimeSharedDropout"]

# A conv layer's output channels, or "M": 2×2 max-pooling of the spikes (ceil mode, so 7×7 becomes 4×4).
LayerSpec = int | Literal["M"]


class TimeSharedDropout(nn.Module):
    """Dropout whose mask is drawn once per sample and shared by every time step (SpikingJelly's ``layer.Dropout``).

    A fresh mask per step would let a unit fire at steps where it is dropped and vice versa, which
    averages out over T; one mask per sample removes the unit for the whole sequence, as dropout does in an ANN.
    """

    def __init__(self, p: float) -> None:
        """
        Args:
            p: probability of zeroing a unit, in [0, 1).
        """
        super().__init__()
        if not 0 <= p < 1:
            raise ConfigurationError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return ``x_seq`` ``[T, B, ...]`` with the same units of each sample zeroed at every step (scaled by ``1/(1-p)``)."""
        if not self.training or self.p == 0:
            return x_seq
        keep = torch.empty_like(x_seq[0]).bernoulli_(1 - self.p).div_(1 - self.p)
        return x_seq * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpikingLinear(nn.Module):
    """A spiking FC layer: ``[T, B, in]`` → linear → neuron → spikes ``[T, B, out]``.

    The neuron sees the current as ``[T, B, out, 1, 1]``, the layout every neuron template builds
    for, so LIF, PLIF, AdaptiveLIF and STAA's aggregator (GC and SA on a 1×1 map) all apply.
    """

    def __init__(self, in_features: int, out_features: int, neuron: nn.Module) -> None:
        """
        Args:
            in_features: inputs per step.
            out_features: spiking units of the layer.
            neuron: the layer's neuron, built by a template for ``out_features`` channels.
        """
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.neuron = neuron

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return spikes ``[T, B, out]`` for inputs ``[T, B, in]``."""
        return self.neuron(self.linear(x_seq)[..., None, None]).flatten(2)


class SpikingConvNet(nn.Module):
    """Spiking CNN: images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]`` → per-step logits ``[T, B, classes]``.

    ``features`` lists conv3×3 + BN (shared over time) + neuron layers by their channels, with
    ``"M"`` for 2×2 max-pooling of the spikes (ceil mode); empty, the input itself goes on. The last
    spikes are average-pooled to ``head_grid``×``head_grid`` (nothing to do when the map has that size already), flattened,
    passed through the spiking FC layers ``hidden`` (each after time-shared dropout) and a linear
    readout applied at every step. Static images are repeated ``time_steps`` times (direct encoding).

    >>> net = SpikingConvNet(10, features=(8, "M", 16, "M"), hidden=(32,), head_grid=7, in_channels=1)
    >>> tuple(net(torch.rand(2, 1, 28, 28)).shape)  # T=4 steps of logits
    (4, 2, 10)
    """

    def __init__(
        self,
        num_classes: int,
        features: Sequence[LayerSpec] = (32, "M", 64, "M"),
        hidden: Sequence[int] = (256,),
        head_grid: int = 7,
        dropout: float = 0.0,
        in_channels: int = 3,
        time_steps: int = 4,
        width_multiplier: float = 1.0,
        neuron: NeuronTemplate | None = None,
        spike_conv_max_density: float = DEFAULT_MAX_DENSITY,
    ) -> None:
        """
        Args:
            num_classes: number of output classes.
            features: conv layers by output channels, "M" for 2×2 max-pooling (e.g. 32, M, 64, M); empty for FC layers only.
            hidden: widths of the spiking FC layers between the conv layers and the readout.
            head_grid: side of the map the last spikes are average-pooled to before the first FC layer.
            dropout: time-shared dropout probability before every FC layer (PLIF: 0.5); 0 turns it off.
            in_channels: channels of the input (1 for grey images, 3 for RGB, 2 for DVS polarity frames).
            time_steps: number of steps T a static image is repeated for.
            width_multiplier: factor applied to every conv and hidden width (at least 1 channel).
            neuron: neuron template every spiking layer is built from; null means ``LIF()``.
            spike_conv_max_density: the convolutions after the first compute from their nonzero inputs (CPU) when at most this fraction is nonzero; 0 turns that off.
        """
        super().__init__()
        convs = [spec for spec in features if spec != "M"]
        if (features and not convs) or any(not isinstance(spec, int) or spec < 1 for spec in convs):
            raise ConfigurationError(
                f"features must list positive conv widths and 'M' for pooling, with at least one conv, or be empty "
                f"(FC layers only), got {list(features)}"
            )
        if not convs and not hidden:
            raise ConfigurationError("a network without conv layers needs spiking FC layers; set hidden, e.g. [256]")
        if any(width < 1 for width in hidden) or head_grid < 1 or width_multiplier <= 0:
            raise ConfigurationError(
                f"hidden widths, head_grid and width_multiplier must be positive, got hidden={list(hidden)}, "
                f"head_grid={head_grid}, width_multiplier={width_multiplier}"
            )
        template = LIF() if neuron is None else neuron
        if not isinstance(template, NeuronTemplate):
            raise ConfigurationError(
                f"neuron must be a neuron template with build(channels, time_steps) and for_stage(stage, num_stages) "
                f"(LIF, PLIF, IF, AdaptiveLIF, STAA), got {type(template).__name__}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = 1
        self.encoder = DirectEncoder(time_steps)
        # Stage i is the i-th spiking layer (0 the first conv); STAA's `stages` picks among them.
        num_stages = len(convs) + len(hidden) - 1
        stage_templates = (template.for_stage(stage, num_stages) for stage in range(num_stages + 1))

        def scale(width: int) -> int:
            return max(1, round(width * width_multiplier))

        layers: list[nn.Module] = []
        channels = in_channels
        for spec in features:
            if spec == "M":
                layers.append(TimeDistributed(nn.MaxPool2d(2, ceil_mode=True)))
                continue
            width = scale(spec)
            layers += conv_bn_neuron(channels, width, lambda c: next(stage_templates).build(c, time_steps))
            channels = width
        layers.append(TimeDistributed(nn.AdaptiveAvgPool2d(head_grid)))
        self.features = nn.Sequential(*layers)
        self.feature_channels = channels
        head: list[nn.Module] = []
        width_in = channels * head_grid * head_grid
        for width in map(scale, hidden):
            head += [
                TimeSharedDropout(dropout),
                SpikingLinear(width_in, width, next(stage_templates).build(width, time_steps)),
            ]
            width_in = width
        self.hidden = nn.Sequential(*head, TimeSharedDropout(dropout))
        self.fc = nn.Linear(width_in, num_classes)
        init_resnet_weights(self)
        for module in self.modules():
            if isinstance(module, SpikeConv2d):
                module.max_density = spike_conv_max_density
        self.to(memory_format=torch.channels_last)

    @property
    def time_steps(self) -> int:
        """Number of steps T a static image ``[B, C, H, W]`` is repeated for."""
        return self.encoder.time_steps

    def forward_features(self, x: Tensor) -> Tensor:
        """Return the last conv layer's pooled spikes ``[T, B, C, head_grid, head_grid]`` for ``[B,C,H,W]`` or ``[T,B,C,H,W]``."""
        return self.features(as_time_major(x, self))

    def forward_head(self, features: Tensor) -> Tensor:
        """Return per-step logits ``[T, B, classes]`` from the conv spikes: flatten, spiking FC layers, readout."""
        return self.fc(self.hidden(features.flatten(2)))

    def forward(self, x: Tensor) -> Tensor:
        """Return per-step logits ``[T, B, classes]`` for images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]``."""
        return self.forward_head(self.forward_features(x))


# Layer plans of the named networks; the remaining SpikingConvNet arguments come from the caller.
CONVNET_LAYOUTS: dict[str, dict[str, Any]] = {
    "convnet2": dict(features=(32, "M", 64, "M"), hidden=(256,), head_grid=7),
    "plif_net": dict(features=(128, "M", 128, "M"), hidden=(2048,), head_grid=7, dropout=0.5),
    "vgg_small": dict(features=(64, 64, "M", 128, 128, "M", 256, 256, "M"), hidden=(512,), head_grid=4),
    "shd_mlp": dict(features=(), hidden=(256, 256), head_grid=1),
}
