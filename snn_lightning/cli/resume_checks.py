"""Checks of a resumed fit that run before anything is written: a refused resume leaves its run folder as it was.

Lightning opens the loggers and saves ``config.yaml``/``hparams.yaml`` before it restores the
checkpoint, and its CSVLogger deletes ``metrics.csv`` when it opens a folder that holds files. A
resume that stops at the restore (a checkpoint of another model) or trains nothing (the run is
already at ``max_epochs``) would so leave the run's record rewritten or gone; these checks refuse
such a resume first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from snn_lightning.errors import CheckpointError, ConfigurationError
from snn_lightning.runs import run_folder_of

__all__ = ["check_resume", "does_not_fit"]


def does_not_fit(ckpt_path: str | Path | None, mismatch: str) -> CheckpointError:
    """Return the error for checkpoint ``ckpt_path`` whose weights do not fit the model, ``mismatch`` saying how.

    Args:
        ckpt_path: the checkpoint given with ``--ckpt_path``.
        mismatch: which tensors differ (shapes, missing or unexpected keys).
    """
    return CheckpointError(
        f"checkpoint {ckpt_path} does not fit the configured model: {mismatch}; it was "
        f"saved from another model: pass the config it was trained with (config.yaml in its run folder), "
        f"or leave out --ckpt_path to start afresh"
    )


def shape_mismatch(saved: dict[str, Any], model: dict[str, Any]) -> str | None:
    """Return which tensors of state dict ``saved`` have another shape in ``model``'s, or None when all that both hold agree.

    Keys only one side holds are left to the model's own loading, which may rename or drop them
    (old BatchNorm names, the KD modules of a distillation); lazy parameters have no shape yet.

    Args:
        saved: the checkpoint's ``state_dict``.
        model: the configured model's ``state_dict()``.
    """
    differ = [
        (key, list(value.shape), list(model[key].shape))
        for key, value in saved.items()
        if key in model
        and isinstance(value, torch.Tensor)
        and not torch.nn.parameter.is_lazy(model[key])
        and value.shape != model[key].shape
    ]
    if not differ:
        return None
    key, in_checkpoint, in_model = differ[0]
    more = ", …" if len(differ) > 1 else ""
    return f"{len(differ)} tensors differ in shape ({key}: {in_checkpoint} in the checkpoint, {in_model} in the model{more})"


def _is_reached(current: int, maximum: int | None) -> bool:
    """Return whether ``current`` reached ``maximum`` (-1 or None: no limit), as Lightning's fit loop decides."""
    return maximum is not None and maximum != -1 and current >= maximum


def check_resume(trainer: L.Trainer, model: L.LightningModule, checkpoint: dict[str, Any], ckpt_path: str) -> None:
    """Raise the error that stops a fit resumed from ``checkpoint`` when it cannot restore it or (but for a
    ``fast_dev_run``) would train nothing.

    Args:
        trainer: the fit's trainer (its ``max_epochs`` and ``max_steps``).
        model: the configured model the checkpoint is to be loaded into.
        checkpoint: the resumed Lightning checkpoint (read on the CPU).
        ckpt_path: its path, for the message.
    """
    mismatch = shape_mismatch(checkpoint["state_dict"], model.state_dict())
    if mismatch:
        raise does_not_fit(ckpt_path, mismatch)
    if trainer.fast_dev_run:  # a smoke test writes into a folder of its own, never into the run
        return
    progress = (checkpoint.get("loops") or {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    # `processed` counts the epoch a checkpoint saved at its end belongs to; Lightning stops on it too.
    epochs = progress.get("processed", checkpoint.get("epoch", 0))
    steps = checkpoint.get("global_step", 0)
    run = run_folder_of(Path(ckpt_path))
    what = f"run {run}" if run else f"checkpoint {ckpt_path}"
    if _is_reached(epochs, trainer.max_epochs):
        raise ConfigurationError(
            f"{what} already trained {epochs} epochs and --trainer.max_epochs is {trainer.max_epochs}; raise "
            f"--trainer.max_epochs above {epochs} to continue it (the run is left as it is)"
        )
    if _is_reached(steps, trainer.max_steps):
        raise ConfigurationError(
            f"{what} already trained {steps} steps and --trainer.max_steps is {trainer.max_steps}; raise "
            f"--trainer.max_steps above {steps} to continue it (the run is left as it is)"
        )
