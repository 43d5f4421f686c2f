"""Keep a resumed fit's earlier rows of ``metrics.csv``, which Lightning's CSVLogger deletes when it reopens a run folder."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger, Logger

__all__ = ["ResumedMetrics"]


class ResumedMetrics(L.Callback):
    """Hand the CSV metrics of the epochs before a resumed fit's first epoch back to its CSVLogger.

    Lightning's CSVLogger removes ``metrics.csv`` when it opens a folder that already holds files, so
    a fit resumed into its run folder (``--ckpt_path last``) would keep only the epochs it trains
    itself. :meth:`read` takes the rows when the trainer is built, before any logger opens its folder;
    at the start of training (after the checkpoint set the epoch) the rows of the earlier epochs go
    back to the logger, and those of the resumed epoch and later, which are trained again, are dropped.
    """

    def __init__(self, earlier: dict[int, list[dict[str, str]]]) -> None:
        """
        Args:
            earlier: the rows of ``metrics.csv`` found for each CSVLogger, by its position in the trainer's loggers.
        """
        self.earlier = earlier

    @classmethod
    def read(cls, loggers: Sequence[Logger]) -> ResumedMetrics:
        """Return the callback holding the ``metrics.csv`` rows that each CSVLogger among ``loggers`` finds in its folder."""
        earlier = {}
        for index, logger in enumerate(loggers):
            if isinstance(logger, CSVLogger):
                path = Path(logger.log_dir) / "metrics.csv"
                if path.is_file():
                    with path.open(newline="") as file:
                        earlier[index] = list(csv.DictReader(file))
        return cls(earlier)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            for index, rows in self.earlier.items():
                kept = [row for row in rows if row.get("epoch") and int(float(row["epoch"])) < trainer.current_epoch]
                trainer.loggers[index].experiment.metrics[:0] = kept
        self.earlier = {}
