"""Safety of long runs: stop on a NaN loss, input or weight, replay epochs exactly on resume, write checkpoints atomically, check output folders.

The CLI turns all of them on (``NaNGuard`` and ``EpochSeed`` as default callbacks,
``AtomicCheckpointIO`` as the checkpoint writer, ``check_output_dirs`` before a run); with a plain
``Trainer`` add them yourself. ``NaNGuard`` lives in :mod:`snn_lightning.callbacks.nan_guard`.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor
from torch.nn.parameter import is_lazy
from torch.utils.data import DataLoader

from snn_lightning.callbacks.nan_guard import NaNGuard, latest_checkpoint
from snn_lightning.errors import OutputDirError

__all__ = [
    "AtomicCheckpointIO",
    "EpochSeed",
    "NaNGuard",
    "check_output_dirs",
    "checkpoint_size",
    "latest_checkpoint",
]

MiB = 2**20
# Room left for logs, plots and the config beside the checkpoints.
LOG_HEADROOM = 64 * MiB


class EpochSeed(L.Callback):
    """Seed torch, numpy and ``random`` at the start of every training epoch from ``(seed, epoch)``.

    An epoch's shuffling, augmentation and dropout then depend only on the seed and the epoch
    number, not on what ran before it, so a run resumed from an end-of-epoch checkpoint replays
    the following epochs exactly. Worker processes draw from their own generators: the package's
    data modules seed them, and their sample order, from :meth:`loader_seed`, which this callback
    hands them at setup (their ``train_loader_seed``); a loader of your own needs ``num_workers: 0``
    for an exact resume.
    Other train loaders get a private generator for the base seed their iterator draws, so the
    global stream after the seeding is the same whether Lightning created the epoch's iterator
    before this hook (first epoch of a run, resume) or after it (later epochs). The seed is stored
    in checkpoints and restored on resume.
    """

    def __init__(self, seed: int | None = None) -> None:
        """
        Args:
            seed: base seed; null takes the one ``seed_everything`` set, and without one epochs are not reseeded.
        """
        self.seed = seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.seed is None and os.environ.get("PL_GLOBAL_SEED"):
            self.seed = int(os.environ["PL_GLOBAL_SEED"])
        if hasattr(trainer.datamodule, "train_loader_seed"):  # the package's data modules (SplitDataModule)
            trainer.datamodule.train_loader_seed = functools.partial(self.loader_seed, trainer)

    def loader_seed(self, trainer: L.Trainer) -> int | None:
        """Return the seed of this epoch's training batches on this rank, from the seed, the epoch and the rank.

        None when no seed is set. Read when the epoch's loader iterator starts, which Lightning does
        before ``on_train_epoch_start`` in the first epoch of a process; the epoch is the fit loop's
        count of processed epochs, which a resumed run has restored by then (``current_epoch`` still
        reads the checkpoint's epoch there, one less after an epoch end).

        Args:
            trainer: the trainer running the fit.
        """
        if self.seed is None:
            return None
        entropy = [self.seed, trainer.fit_loop.epoch_progress.current.processed, trainer.global_rank]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.seed is None:
            return
        apply_to_collection(trainer.train_dataloader, DataLoader, self._give_generator)
        epoch_seed = int(np.random.SeedSequence([self.seed, trainer.current_epoch]).generate_state(1)[0])
        random.seed(epoch_seed)
        np.random.seed(epoch_seed)
        torch.manual_seed(epoch_seed)

    def _give_generator(self, loader: DataLoader) -> None:
        if loader.generator is None:
            loader.generator = torch.Generator().manual_seed(self.seed)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seed = state_dict["seed"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to a temporary file beside its target, fsync it, then rename it over the target.

    A process killed while saving leaves the previous checkpoint whole (and a hidden
    ``.<name>.<pid>.<id>.tmp`` file beside it, removed by the next save). Lightning's own writer stages the file in the
    system temporary folder and moves it, which is a copy, not a rename, when that folder is on
    another disk than the checkpoints (the rule on clusters). Remote paths (``s3://…``) keep
    Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            # os.open with 0o666 lets the umask set the permissions, as for any other file the run writes.
            with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
            # Left by a process killed while saving: one process (rank 0) writes a given checkpoint at a time.
            for stale in target.parent.glob(f".{target.name}.*.tmp"):
                stale.unlink(missing_ok=True)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                raise OutputDirError(
                    f"the disk is full while writing checkpoint {target}; the previous {target.name} is intact; "
                    f"free space on that disk or point the ModelCheckpoint dirpath elsewhere"
                ) from error
            raise


def _output_dirs(trainer: L.Trainer) -> dict[Path, str]:
    """Return the local folders the run writes to, each with the setting that chooses it."""
    dirs = [(trainer.default_root_dir, "trainer.default_root_dir")]
    dirs += [(logger.save_dir, "trainer.logger.init_args.save_dir") for logger in trainer.loggers]
    dirs += [
        (callback.dirpath, "the ModelCheckpoint dirpath in trainer.callbacks")
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint)
    ]
    found: dict[Path, str] = {}
    for folder, setting in dirs:
        if folder and "://" not in str(folder):
            found.setdefault(Path(folder).expanduser().absolute(), setting)
    return found


def _nearest_existing(folder: Path) -> Path:
    """Return ``folder`` or its closest ancestor that exists (where the run will create the rest)."""
    while not folder.exists():
        folder = folder.parent
    return folder


def checkpoint_size(module: torch.nn.Module) -> int:
    """Return the estimated bytes of one training checkpoint of ``module``: its tensors three times (weights + optimizer state).

    A lazy layer's parameters (``nn.LazyLinear`` before its first batch) have no size yet and count
    as 0, as does an extra state that is not a tensor.
    """
    return 3 * sum(
        tensor.numel() * tensor.element_size()
        for tensor in module.state_dict().values()
        if isinstance(tensor, Tensor) and not is_lazy(tensor)
    )


def check_output_dirs(trainer: L.Trainer, module: torch.nn.Module | None = None) -> None:
    """Raise :class:`OutputDirError` unless every log and checkpoint folder of ``trainer`` can be written and has room.

    Writes (and removes) a small file in each folder, or in its closest existing ancestor when the
    folder is not there yet, so no folder is created. The room needed is 64 MiB for logs, plus two
    checkpoints of ``module`` (the new one is written beside the old) when it is given (for fit).

    Args:
        trainer: the trainer whose default_root_dir, loggers and ModelCheckpoint folders are checked.
        module: the model to be checkpointed; None checks for log room only (validate, test, predict).
    """
    min_free_bytes = LOG_HEADROOM + (2 * checkpoint_size(module) if module is not None else 0)
    for folder, setting in _output_dirs(trainer).items():
        existing = _nearest_existing(folder)
        if not existing.is_dir():
            raise OutputDirError(f"output folder {folder} cannot be created: {existing} is a file; change {setting}")
        try:
            with tempfile.TemporaryFile(dir=existing, prefix=".snn-lightning-write-test-") as file:
                file.write(b"\0" * 4096)
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            raise OutputDirError(
                f"output folder {folder} is not writable ({error.strerror or error} in {existing}); "
                f"fix its permissions or change {setting}"
            ) from error
        free = shutil.disk_usage(existing).free
        if free < min_free_bytes:
            raise OutputDirError(
                f"only {free / MiB:.0f} MiB are free on the disk of output folder {folder} but the run needs about "
                f"{min_free_bytes / MiB:.0f} MiB (logs and two checkpoints); free space or change {setting}"
            )
