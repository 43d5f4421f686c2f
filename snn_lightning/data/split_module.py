"""The base of the data modules: settings checks, the train/validation/test splits built by ``setup``, and their dataloaders."""

from __future__ import annotations

from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import lightning
from lightning.fabric.utilities.data import suggested_max_num_workers
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigurationError
from .loaders import EpochSeededLoader, check_worker_temp_dir
from .splits import stratified_split

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "SplitDataModule",
    "TransformedSubset",
    "check_at_least",
    "check_split_settings",
    "default_num_workers",
]

# The most dataloader workers a data module starts when num_workers is null.
DEFAULT_MAX_WORKERS = 8


def default_num_workers(processes_on_machine: int = 1) -> int:
    """Return the dataloader workers of one process when ``num_workers`` is null: Lightning's suggestion, at most 8.

    Lightning suggests the CPU cores this process may use (its affinity, else the CPU count),
    divided by the training processes on the machine, less one for the process itself, and at
    least 1; so a 2-core machine gets 1 worker and neither Lightning nor PyTorch warns about the
    count.
    """
    return min(DEFAULT_MAX_WORKERS, suggested_max_num_workers(processes_on_machine))


class TransformedSubset(Dataset):
    """The samples ``indices`` of ``source`` as ``(transform(sample), int(label))``.

    Train and validation share one source, each with its own transform, so a held-out
    validation sample is never augmented.
    """

    def __init__(self, source: Dataset, indices: Any, transform: Callable[[Any], Any]) -> None:
        """
        Args:
            source: a dataset of ``(sample, label)`` pairs.
            indices: the positions in ``source`` this subset holds, in order.
            transform: applied to each sample when it is read.
        """
        self.source = source
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        sample, label = self.source[int(self.indices[index])]
        return self.transform(sample), int(label)


def check_at_least(name: str, value: int, least: int, note: str = "") -> None:
    """Raise ConfigurationError naming ``data.<name>`` when ``value`` is below ``least``."""
    if value < least:
        raise ConfigurationError(f"data.{name} is {value}{note}; set it to an integer >= {least}")


def check_split_settings(batch_size: int, num_workers: int | None, val_fraction: float) -> None:
    """Raise ConfigurationError naming the first of ``batch_size``, ``num_workers`` and ``val_fraction`` out of range."""
    check_at_least("batch_size", batch_size, 1)
    if num_workers is not None:
        check_at_least("num_workers", num_workers, 0)
    if not 0 <= val_fraction < 1:
        raise ConfigurationError(
            f"data.val_fraction is {val_fraction}; set it in [0, 1) (0 validates on the test split)"
        )


def evaluation_shard_sampler(dataset: Sized, num_replicas: int, rank: int) -> UnrepeatedDistributedSampler:
    """Return Lightning's sampler of the indices ``rank, rank + num_replicas, …``: each sample once over all ranks.

    torch's ``DistributedSampler`` pads every shard to one length by repeating samples, so metrics
    over the shards would count some twice (22/144 correct instead of 22/143); these shards differ by
    at most one sample, which evaluation tolerates (torchmetrics and ``sync_dist`` sum samples and
    counts). Training keeps Lightning's padded sampler: its gradient all-reduce needs equal steps.
    A set smaller than the ranks is refused: a rank with no batch skips collectives the others wait in.

    Args:
        dataset: the evaluation set to split.
        num_replicas: number of ranks the set is split over.
        rank: the rank whose shard the sampler yields.
    """
    size = len(dataset)
    if 0 < size < num_replicas:
        raise ConfigurationError(
            f"an evaluation set of {size} samples cannot give each of the {num_replicas} DDP processes a sample; "
            f"evaluate on at most {size} processes (trainer.devices x trainer.num_nodes) or on a larger set"
        )
    return UnrepeatedDistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)


class SplitDataModule(lightning.LightningDataModule):
    """Base of the data modules: shuffled train loader, fixed-order val/test/predict loaders (predict reads the test split).

    Under DDP (or any strategy that shards data) the val/test/predict loaders split their set over
    the ranks with :func:`evaluation_shard_sampler`, so every sample is scored exactly once and the
    metrics equal one process's; the train loader is left to Lightning's shuffling, padded sampler.
    The train loader is an :class:`EpochSeededLoader` seeded by ``train_loader_seed``, which the
    trainer's ``EpochSeed`` callback sets to its (seed, epoch, rank) seed, so a resumed run replays
    its epochs exactly with worker processes too.

    Subclasses set ``batch_size``, ``num_workers`` (None: :func:`default_num_workers`) and
    ``pin_memory``; ``collate_fn`` (None: PyTorch's) batches the samples. ``setup`` builds
    ``train_set``, ``val_set`` and ``test_set`` from :meth:`_test_split` and :meth:`_train_split`,
    which subclasses that hold ``val_fraction`` and ``seed`` implement, or subclasses override it.
    """

    collate_fn: Callable[[list[Any]], Any] | None = None
    batch_size: int
    num_workers: int | None
    pin_memory: bool
    root: str
    val_fraction: float
    seed: int
    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None
    # Returns the seed of each training epoch's loader (sample order, worker seeds); None: drawn from torch.
    train_loader_seed: Callable[[], int | None] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Return ``(channels, height, width)`` of one image or frame, known without reading data."""
        raise ConfigurationError(
            f"data module {type(self).__name__} does not tell the size of its inputs; define its input_shape "
            f"property or use StaticImageDataModule or EventDataModule"
        )

    @property
    def workers(self) -> int:
        """Return the dataloader worker processes: ``num_workers``, or when that is None :func:`default_num_workers`."""
        if self.num_workers is not None:
            return self.num_workers
        return default_num_workers(1 if self.trainer is None else self.trainer.num_devices)

    def _root(self) -> Path:
        """Return ``root`` as an absolute path, so error messages name exactly where data was looked for.

        Raises ConfigurationError when ``root`` is a file or lies inside one, which no download can fix.
        """
        root = Path(self.root).expanduser().absolute()
        existing = next(path for path in (root, *root.parents) if path.exists())
        if not existing.is_dir():
            where = "is a file" if existing == root else f"lies inside {existing}, a file"
            raise ConfigurationError(
                f"data.root {root} {where}, not a folder; set data.init_args.root to the folder holding "
                f"the dataset (download: true creates a missing one)"
            )
        return root

    def _needs_train(self, stage: str | None) -> bool:
        """Return whether ``stage`` reads the training side: train and validation splits."""
        return stage in (None, "fit", "validate")

    def _needs_test(self, stage: str | None) -> bool:
        """Return whether ``stage`` reads the test split (validation does too when ``val_fraction`` is 0)."""
        return stage in (None, "test", "predict") or self.val_fraction == 0

    def _hold_out(self, labels: Any) -> tuple[Any, Any]:
        """Return ``(kept, held)`` positions of ``labels``: ``val_fraction`` of each class held out, seeded."""
        return stratified_split(labels, self.val_fraction, self.seed)

    def _test_split(self) -> Dataset:
        """Return the test split."""
        raise NotImplementedError

    def _train_split(self) -> tuple[Dataset, Dataset]:
        """Return the training split and the validation split held out of the training side."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the splits that ``stage`` needs (fit, validate, test or predict; None builds all)."""
        if self._needs_test(stage) and self.test_set is None:
            self.test_set = self._test_split()
        if self._needs_train(stage) and self.val_set is None:
            self.train_set, held_out = self._train_split()
            self.val_set = self.test_set if self.val_fraction == 0 else held_out

    def _loader(self, dataset: Dataset | None, shuffle: bool, collate_fn: Callable | None = None) -> DataLoader:
        """Return a dataloader over ``dataset`` with this module's batch and worker settings (and ``collate_fn`` over its own).

        ``shuffle`` marks the training loader; a fixed-order (evaluation) loader reads only this
        rank's unpadded shard when the trainer's strategy shards data over several ranks.
        """
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        shard = None if self.trainer is None else self.trainer.distributed_sampler_kwargs
        workers = self.workers
        check_worker_temp_dir(workers)
        settings = dict(
            batch_size=self.batch_size,
            num_workers=workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_fn or self.collate_fn,
        )
        if shuffle:
            return EpochSeededLoader(dataset, shuffle=True, epoch_seed=self._train_seed, **settings)
        sampler = None
        if shard and shard["num_replicas"] > 1:
            sampler = evaluation_shard_sampler(dataset, num_replicas=shard["num_replicas"], rank=shard["rank"])
        return DataLoader(dataset, sampler=sampler, persistent_workers=workers > 0, **settings)

    def _train_seed(self) -> int | None:
        """Return the seed of the training epoch about to start (None when nothing set ``train_loader_seed``)."""
        return None if self.train_loader_seed is None else self.train_loader_seed()

    def train_dataloader(self) -> DataLoader:
        """Return the shuffled, augmented training batches."""
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Return the validation batches (held-out training samples, or the test split when val_fraction is 0)."""
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Return the test split batches."""
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Return the test split batches for prediction."""
        return self._loader(self.test_set, shuffle=False)
