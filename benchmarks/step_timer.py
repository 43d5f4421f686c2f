"""A Lightning callback for benchmarks/plain_loop.py: training images/s after a warm-up, written as JSON to ``$RESULT_PATH``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L


class StepTimer(L.Callback):
    """Time the training steps after the first ``skip`` ones and write their images/s when the fit ends."""

    def __init__(self, skip: int = 10) -> None:
        """
        Args:
            skip: warm-up steps left out of the timing.
        """
        self.skip = skip
        self.start = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.skip:
            self.start = time.perf_counter()
        if trainer.global_step >= self.skip:
            self.images += len(batch[1])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self.start
        Path(os.environ["RESULT_PATH"]).write_text(json.dumps({"images_per_s": self.images / seconds}))
