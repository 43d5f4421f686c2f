"""Lightning's ModelCheckpoint with ``last.ckpt`` rewritten at the end of every epoch, as resuming needs."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(LightningModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` (``save_last: true``) always holds the latest epoch.

    Lightning 2.6 rewrites ``last.ckpt`` only in the steps where it also saves a top-k checkpoint,
    so with ``monitor: val/acc`` a run killed at epoch 14 whose best was epoch 12 resumes from
    epoch 12. This subclass also saves it when the monitored metric did not improve. All arguments
    are Lightning's.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer)
        super().on_train_epoch_end(trainer, pl_module)
        if due:
            self._save_last_if_missed(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer)
        super().on_validation_end(trainer, pl_module)
        if due:
            self._save_last_if_missed(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning 2.6 saves last.ckpt here even under fast_dev_run, which promises no checkpoints.
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def _save_last_if_missed(self, trainer: L.Trainer) -> None:
        """Save ``last.ckpt`` unless the parent class saved a checkpoint (and with it ``last``) in this step."""
        if self.save_last is True and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
