"""Write what ``predict`` computes: per sample its index, predicted class, label and class probabilities."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["PredictionWriter"]


class PredictionWriter(BasePredictionWriter):
    """Save the predictions of a ``predict`` run as ``predictions.csv`` and ``predictions.pt`` in one folder.

    The CSV has one row per sample: ``index`` (its position in the predict split, the test split of
    the data modules), ``prediction``, ``target`` (when the batches carry labels) and
    ``probability`` (of the predicted class). The ``.pt`` file holds the same columns as tensors and
    the full ``[N, classes]`` probabilities. Under DDP every rank writes its own share as
    ``predictions-rank<r>.*``. Rank 0 prints where the files are. The CLI adds this writer to ``predict`` when
    none is configured.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        """
        Args:
            output_dir: folder for the files; null writes into ``trainer.default_root_dir`` (the CLI's ``predict_N`` folder).
        """
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        if not predictions:
            return
        if isinstance(predictions[0], list):  # one list per dataloader: this writer reads the first
            predictions = predictions[0]
        if batch_indices and batch_indices[0] and isinstance(batch_indices[0][0], list):
            batch_indices = batch_indices[0]
        columns = {key: torch.cat([batch[key].cpu() for batch in predictions]) for key in predictions[0]}
        indices = [index for batch in batch_indices for index in batch]
        columns["index"] = torch.tensor(indices) if indices else torch.arange(len(columns["prediction"]))
        stem = "predictions" if trainer.world_size == 1 else f"predictions-rank{trainer.global_rank}"
        folder = Path(self.output_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(columns, folder / f"{stem}.pt")
        chosen = columns["probabilities"].gather(1, columns["prediction"].unsqueeze(1)).squeeze(1)
        header = ["index", "prediction", *(["target"] if "target" in columns else []), "probability"]
        with open(folder / f"{stem}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            for row in range(len(chosen)):
                values = [int(columns["index"][row]), int(columns["prediction"][row])]
                values += [int(columns["target"][row])] if "target" in columns else []
                writer.writerow([*values, f"{float(chosen[row]):.6f}"])
        if trainer.is_global_zero:
            written = (folder / stem).absolute()
            others = "" if trainer.world_size == 1 else f"; each of the {trainer.world_size} ranks writes its own share"
            print(f"predictions ({len(chosen)} samples{others}): {written}.csv, {written}.pt", file=sys.stderr)
