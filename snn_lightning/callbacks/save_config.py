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
    It is logged once: Lightning's own logging of the module's hyperparameters is turned off.
    """

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Log the resolved config (as written to ``config.yaml``) to every logger; called on rank zero only."""
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
        # The model's and data's own hyperparameters are part of this config: Lightning would log them a second time.
        pl_module._log_hyperparams = False
        if trainer.datamodule is not None:
            trainer.datamodule._log_hyperparams = False
