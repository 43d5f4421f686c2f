"""Accuracy after each time step: the accuracy–latency trade-off of a spiking classifier."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from snn_lightning.callbacks.spike_stats import log_reduced

__all__ = ["PerStepAccuracy", "running_mean_logits"]


def running_mean_logits(logits: Tensor) -> Tensor:
    """Return ``[T, B, classes]``: at step ``t`` the mean of the logits of steps ``1..t``."""
    steps = torch.arange(1, logits.shape[0] + 1, device=logits.device, dtype=logits.dtype)
    return logits.cumsum(0) / steps.view(-1, *([1] * (logits.ndim - 1)))


class PerStepAccuracy(L.Callback):
    """Log ``{stage}/acc_t1 … {stage}/acc_tT`` for val and test: top-1 accuracy of the running mean of the logits.

    ``acc_tT`` equals ``{stage}/acc`` (the prediction uses the mean over all T steps); earlier
    steps show how much accuracy an earlier decision would cost. The callback reads the per-step
    logits ``[T, B, classes]`` that :class:`~snn_lightning.modules.ClassifierModule`'s
    validation and test steps return under ``"outputs"``; accuracies are torchmetrics, synced
    over DDP ranks. The last values are kept in :attr:`accuracies` (stage → list over t).
    """

    def __init__(self) -> None:
        self.accuracies: dict[str, list[float]] = {}
        self._metrics: list[MulticlassAccuracy] = []

    def _update(self, pl_module: L.LightningModule, outputs: Any, batch: Any) -> None:
        logits = outputs.get("outputs") if isinstance(outputs, dict) else None
        if logits is None or logits.ndim != 3:
            shape = None if logits is None else tuple(logits.shape)
            raise ValueError(
                f"PerStepAccuracy needs per-step logits [T, B, classes] returned as outputs['outputs'] by the "
                f"validation/test step (ClassifierModule does this), got {shape}; use it with a spiking classifier"
            )
        if len(self._metrics) != logits.shape[0]:
            if self._metrics:
                raise ValueError(
                    f"PerStepAccuracy saw T={len(self._metrics)} and then T={logits.shape[0]} in one epoch; "
                    f"evaluate with one number of time steps"
                )
            self._metrics = [
                MulticlassAccuracy(logits.shape[-1], average="micro").to(pl_module.device)
                for _ in range(logits.shape[0])
            ]
        targets = batch[1]
        for metric, step_logits in zip(self._metrics, running_mean_logits(logits)):
            metric.update(step_logits, targets)

    def _log(self, pl_module: L.LightningModule, stage: str) -> None:
        values = [metric.compute() for metric in self._metrics]
        self._metrics = []
        self.accuracies[stage] = [value.item() for value in values]
        log_reduced(pl_module, {f"{stage}/acc_t{step}": value for step, value in enumerate(values, start=1)})

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._metrics = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._metrics = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(pl_module, "test")
