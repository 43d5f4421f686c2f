"""Progress display without ``v_num``: Lightning's Rich bar in a terminal, one line per epoch when output goes to a file."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

__all__ = ["EpochLines", "RichProgress"]


class _WithoutVersion:
    """Leave the logger's version (``v_num``, a wandb id or a number) out of the shown metrics: the run folder names it."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float | dict]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class RichProgress(_WithoutVersion, RichProgressBar):
    """Lightning's Rich progress bar, without ``v_num``; the CLI's bar when output goes to a terminal."""


class EpochLines(_WithoutVersion, ProgressBar):
    """Print one line per training epoch (epoch, epoch-level metrics, duration) instead of a bar redrawn in place.

    The CLI's bar when output goes to a file or pipe, where a redrawn bar leaves escape codes and
    wrapped metrics. An epoch's line is printed when its metrics are complete: at the next epoch's
    start, or at the end of training.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        # (epoch, start time) of the epoch whose line is still to be printed; None when there is none.
        self._pending: tuple[int, float] | None = None

    @property
    def is_enabled(self) -> bool:
        """Return whether lines are printed (not on ranks other than zero)."""
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_pending(trainer, pl_module)
        self._pending = (trainer.current_epoch, time.monotonic())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_pending(trainer, pl_module)

    def _print_pending(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the line of the finished epoch, if one is pending."""
        if self._pending is None or not self._enabled:
            return
        epoch, started = self._pending
        self._pending = None
        self.print(
            epoch_line(epoch, trainer.max_epochs, self.get_metrics(trainer, pl_module), time.monotonic() - started)
        )


def epoch_line(epoch: int, max_epochs: int | None, metrics: dict[str, Any], seconds: float) -> str:
    """Return ``epoch 3/30: train/loss 0.512, val/acc 0.912 (1.4 s)``: the epoch counted from 1 and its epoch-level metrics.

    Training metrics come first; per-step values (``*_step``) are left out and the ``_epoch`` suffix of the others dropped.

    Args:
        epoch: the epoch, counted from 0 as Lightning does.
        max_epochs: the trainer's ``max_epochs``; None or -1 for no limit.
        metrics: the progress bar's metrics.
        seconds: the epoch's duration.
    """
    shown = [
        f"{name.removesuffix('_epoch')} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
        for name, value in sorted(metrics.items(), key=lambda item: not item[0].startswith("train/"))
        if not name.endswith("_step")
    ]
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    parts = [f"epoch {epoch + 1}{total}:", ", ".join(shown), f"({seconds:.1f} s)"]
    return " ".join(part for part in parts if part)
