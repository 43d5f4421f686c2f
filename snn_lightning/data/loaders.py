"""The training dataloader whose sample order and worker seeds follow from the epoch alone; the check that workers can hand batches back."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from snn_lightning.errors import ConfigurationError

__all__ = ["EpochSeededLoader", "check_worker_temp_dir"]

# A dataloader worker hands each batch's memory to the main process through a Unix socket that
# Python's multiprocessing opens at <temporary folder>/pymp-XXXXXXXX/listener-XXXXXXXX; a socket
# path holds at most 107 bytes on Linux (103 on macOS). Measured: a 75-byte folder works, 76 hangs.
SOCKET_PATH_LIMIT = 103 if sys.platform == "darwin" else 107
WORKER_SOCKET_NAME = len("/pymp-12345678/listener-12345678")


def check_worker_temp_dir(num_workers: int) -> None:
    """Raise ConfigurationError when ``num_workers`` > 0 and the temporary folder's path is too long for the workers' socket.

    Past the limit the worker's socket cannot be opened, the batch is dropped with a traceback in
    a background thread, and the main process waits for it forever: the run hangs at its first batch.
    """
    if num_workers == 0 or os.name == "nt":
        return
    folder = tempfile.gettempdir()
    room = SOCKET_PATH_LIMIT - WORKER_SOCKET_NAME
    length = len(os.fsencode(folder))
    if length > room:
        raise ConfigurationError(
            f"the temporary folder {folder} is {length} bytes long, and dataloader workers need one of at most "
            f"{room} bytes (they hand batches back through a socket in it, whose path may not exceed "
            f"{SOCKET_PATH_LIMIT} bytes; beyond that the run hangs at its first batch); set TMPDIR to a shorter "
            f"folder (export TMPDIR=/tmp) or data.num_workers to 0"
        )


class EpochSeededLoader(DataLoader):
    """A DataLoader whose every pass reseeds its generator from ``epoch_seed()``: sample order and worker seeds follow from it alone.

    The generator picks the shuffled order and the base seed of the worker processes (each
    worker's torch, numpy and ``random`` start from it and the worker id), so the batches of an
    epoch, augmentation included, are the same whether the epoch follows another in the same
    process or opens a resumed run. Workers are not persistent: persistent workers would carry
    their random state over from the previous epoch, which a resumed run never saw. When
    ``epoch_seed()`` is None the pass draws its seed from torch's global generator, as a plain
    DataLoader does.
    """

    def __init__(self, *args: Any, epoch_seed: Callable[[], int | None], **kwargs: Any) -> None:
        """
        Args:
            epoch_seed: returns the seed of the pass about to start, or None for an unseeded one.
            *args, **kwargs: as for DataLoader; ``generator`` defaults to a private one, ``persistent_workers`` must be false.
        """
        if kwargs.get("persistent_workers"):
            raise ValueError("EpochSeededLoader reseeds its workers every epoch; set persistent_workers=False")
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator()
        super().__init__(*args, **kwargs)
        self.epoch_seed = epoch_seed

    def __iter__(self) -> Any:
        seed = self.epoch_seed()
        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.generator.manual_seed(seed)
        return super().__iter__()
