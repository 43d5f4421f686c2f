"""Show the best, not the last, value of each monitored metric in the wandb runs table."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

__all__ = ["BestMetricSummary"]


class BestMetricSummary(L.Callback):
    """Make every wandb run summarise each ModelCheckpoint's ``monitor`` by its best value (``max`` or ``min`` per ``mode``).

    wandb's runs table shows a metric's summary, which is its last logged value unless defined
    otherwise; with this callback ``val/acc`` there is the best epoch's, the one ``best.ckpt``
    holds. The CLI adds it when a WandbLogger is configured.
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        monitors = {
            callback.monitor: callback.mode
            for callback in trainer.checkpoint_callbacks
            if isinstance(callback, ModelCheckpoint) and callback.monitor
        }
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                for metric, mode in monitors.items():
                    logger.experiment.define_metric(metric, summary=mode)
