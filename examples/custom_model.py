"""Bring your own model: any ``nn.Module`` returning logits ``[T, B, classes]``, wrapped in a ``ClassifierModule``.

From the repository root (the CLI imports the config's ``examples.…`` class paths from the working folder):

    snn-lightning fit --config examples/custom_model.yaml

``TinySpikingNet`` is plain PyTorch with the package's LIF neuron; ``TinySNNClassifier`` is what the
CLI trains: it builds the network from ``num_classes`` and ``in_channels`` (which the CLI links from
the data module) and says how outputs become a loss and a prediction. The base class logs loss and
accuracy and sets up the optimizer and the default cosine schedule.
"""

from __future__ import annotations

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from snn_lightning.layers import DirectEncoder, TemporalBatchNorm2d, TimeDistributed
from snn_lightning.losses import mean_ce
from snn_lightning.modules import ClassifierModule
from snn_lightning.neurons import LIF


class TinySpikingNet(nn.Module):
    """Two conv-BN-LIF layers, an average pool to 2×2 and a linear readout at every step: ``[B, C, H, W]`` to ``[T, B, classes]``."""

    def __init__(self, num_classes: int, in_channels: int, time_steps: int = 4, channels: int = 16) -> None:
        """
        Args:
            num_classes: number of classes.
            in_channels: input channels.
            time_steps: steps T the image is repeated for (direct encoding).
            channels: channels of the first conv layer (the second has twice as many).
        """
        super().__init__()
        self.layers = nn.Sequential(
            DirectEncoder(time_steps),
            TimeDistributed(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)),
            TemporalBatchNorm2d(channels),
            LIF(tau=2.0),
            TimeDistributed(nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False)),
            TemporalBatchNorm2d(2 * channels),
            LIF(tau=2.0),
            TimeDistributed(nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * channels, num_classes))),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Return logits ``[T, B, classes]`` for images ``[B, C, H, W]``."""
        return self.layers(images)


class TinySNNClassifier(ClassifierModule):
    """Train :class:`TinySpikingNet` on the cross-entropy of its time-mean logits; predict their argmax."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        time_steps: int = 4,
        channels: int = 16,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """
        Args:
            num_classes: number of classes; the CLI links it from ``data.num_classes``.
            in_channels: input channels; the CLI links it from ``data.in_channels``.
            time_steps: simulation steps T.
            channels: channels of the network's first conv layer.
            optimizer: optimizer factory; null means SGD(lr=0.1, momentum=0.9, weight_decay=5e-4).
            lr_scheduler: scheduler factory; null means cosine annealing over ``trainer.max_epochs``.
        """
        super().__init__(num_classes, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])  # test --ckpt_path rebuilds the model from them
        self.network = TinySpikingNet(num_classes, in_channels, time_steps, channels)

    def forward(self, images: Tensor) -> Tensor:
        """Return logits ``[T, B, classes]`` for images ``[B, C, H, W]``."""
        return self.network(images)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Return the cross-entropy of the time-mean logits."""
        return mean_ce(outputs, targets)

    def class_logits(self, outputs: Tensor) -> Tensor:
        """Return the time-mean logits ``[B, classes]``."""
        return outputs.mean(0)
