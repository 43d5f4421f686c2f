"""LightningCLI's config saving, extended to send the resolved config to the loggers (wandb, CSV, TensorBoard)."""

from __future__ import annotations

import lightning as L
import yaml
from lightning.pytorch.cli import SaveConfigCallback

__all__ = ["LoggerSaveConfigCallback"]


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` in the log folder and log it to every logger as hyperparameters.

    With a :class:`~lightning.pytorch.loggers.WandbLogger` the whole configuration (trainer, model,
    data, callbacks) appears in the run's config, so runs can be compared and filtered by any setting.
    """

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Log the resolved config (as written to ``config.yaml``) to every logger; called on rank zero only."""
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
