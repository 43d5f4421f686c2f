"""LightningModule that trains an ANN ResNet, e.g. the teacher for knowledge distillation."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from snn_lightning.models import ANN_ARCHITECTURES, ANNArchitecture
from snn_lightning.modules.base import ClassifierModule

__all__ = ["ANNClassifier"]


class ANNClassifier(ClassifierModule):
    """Plain (non-spiking) ResNet classifier with cross-entropy on logits ``[B, classes]``."""

    def __init__(
        self,
        arch: ANNArchitecture = "resnet34",
        num_classes: int = 10,
        in_channels: int = 3,
        stem: Literal["cifar", "imagenet"] = "cifar",
        width_multiplier: float = 1.0,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        warmup_epochs: int = 0,
        exempt_from_weight_decay: bool = False,
        lr_reference_batch: int | None = None,
        compile: bool = False,
    ) -> None:
        """
        Args:
            arch: ANN backbone (``snn_lightning.models.ANN_ARCHITECTURES``).
            num_classes: number of classes; the CLI links it from ``data.num_classes``.
            in_channels: input channels; the CLI links it from ``data.in_channels``.
            stem: ``cifar`` (3x3 conv, no max-pool, for 32x32 inputs) or ``imagenet`` (7x7/2 conv + max-pool).
            width_multiplier: scales every stage width (64–512); a distilling student names it as ``teacher_width_multiplier``.
            label_smoothing: label smoothing of the cross-entropy.
            optimizer: optimizer factory; null means SGD(lr=0.1, momentum=0.9, weight_decay=5e-4).
            lr_scheduler: scheduler factory; null means cosine annealing over ``trainer.max_epochs`` (after ``warmup_epochs``).
            warmup_epochs: epochs of linear learning-rate warm-up before the default cosine schedule (FSTA-SNN: 10 on CIFAR10-DVS, 5 on ImageNet); 0: none.
            exempt_from_weight_decay: no weight decay on BN, biases, per-channel neuron parameters (M, N, PLIF's τ) and STAA's position encodings (FSTA-SNN's recipe).
            lr_reference_batch: the global batch (samples per optimizer step over all processes) the optimizer's lr is set for; the lr is then scaled linearly to this run's (data.batch_size × processes × accumulated batches); null: the lr as given.
            compile: run the network through torch.compile (in place, so checkpoints keep their keys); the first batches take longer while it compiles, and the CPU needs a C++ compiler.
        """
        super().__init__(
            num_classes, optimizer, lr_scheduler, warmup_epochs, exempt_from_weight_decay, lr_reference_batch, compile
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.network = ANN_ARCHITECTURES[arch](
            num_classes=num_classes, in_channels=in_channels, stem=stem, width_multiplier=width_multiplier
        )
        self.label_smoothing = label_smoothing

    def forward(self, images: Tensor) -> Tensor:
        """Return logits ``[B, classes]`` for images ``[B, C, H, W]``."""
        return self.network(images)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def class_logits(self, outputs: Tensor) -> Tensor:
        return outputs
