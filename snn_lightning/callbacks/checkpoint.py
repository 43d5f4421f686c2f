"""Lightning's ModelCheckpoint with ``last.ckpt`` rewritten at the end of every epoch, as resuming needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(LightningModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` (``save_last: true``) always holds the latest epoch.

    Lightning 2.6 rewrites ``last.ckpt`` only in the steps where it also saves a top-k checkpoint,
    so with ``monitor: val/acc`` a run killed at epoch 14 whose best was epoch 12 resumes from
    epoch 12. This subclass also saves it when the monitored metric did not improve. A run folder
    copied or moved and then resumed keeps writing its own ``best``/``last`` files (Lightning would
    add ``last-v1.ckpt`` beside them and forget the best score). All arguments are Lightning's.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the callback's state; a run folder copied or moved since its paths were stored is found again."""
        stored = state_dict.get("dirpath")
        if stored and self.dirpath and Path(stored) != Path(self.dirpath) and self._holds_files_of(state_dict):
            state_dict = _moved_state(state_dict, Path(stored), Path(self.dirpath))
        super().load_state_dict(state_dict)

    def _holds_files_of(self, state_dict: dict[str, Any]) -> bool:
        """Return whether this callback's folder holds the ``last``/``best`` file that ``state_dict`` names (by file name)."""
        named = state_dict.get("last_model_path") or state_dict.get("best_model_path")
        return bool(named) and (Path(self.dirpath) / Path(named).name).is_file()

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


def _moved_state(state_dict: dict[str, Any], stored: Path, dirpath: Path) -> dict[str, Any]:
    """Return ``state_dict`` of a ModelCheckpoint with each path in folder ``stored`` moved to folder ``dirpath``.

    Args:
        state_dict: the callback's state as a checkpoint stored it.
        stored: the folder it was saved from.
        dirpath: the folder it now writes into.
    """

    def moved(path: Any) -> Any:
        return str(dirpath / Path(path).name) if path and Path(path).parent == stored else path

    state = dict(state_dict, dirpath=str(dirpath))
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = moved(state[key])
    if "best_k_models" in state:
        state["best_k_models"] = {moved(path): score for path, score in state["best_k_models"].items()}
    return state
