"""Write a training run's ``run.json`` once its loggers have created their folders."""

from __future__ import annotations

import lightning as L

from snn_lightning.runs import RunFolder

__all__ = ["RunRecord"]


class RunRecord(L.Callback):
    """Store the run's identity (``run.json``) in its folder at the setup of ``fit``, on rank zero.

    Lightning creates the loggers' folders just before the callbacks' setup; a CSVLogger finding a
    file in its folder then warns that earlier logs will be deleted. Written here, ``run.json`` is
    not such a file, and the warning is left for folders that hold a user's earlier logs.
    """

    def __init__(self, run: RunFolder) -> None:
        """
        Args:
            run: the training run whose folder and identity are written.
        """
        self.run = run

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self.run.write()
