"""The dataloaders every data module of the package serves over the splits its ``setup`` builds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning
import torch
from torch.utils.data import DataLoader, Dataset

from snn_lightning.callbacks.safety import train_loader_seed

from .samplers import UnpaddedShardSampler

__all__ = ["EpochSeededLoader", "SplitDataModule"]


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


class SplitDataModule(lightning.LightningDataModule):
    """Base of the data modules: shuffled train loader, fixed-order val/test/predict loaders (predict reads the test split).

    Under DDP (or any strategy that shards data) the val/test/predict loaders split their set over
    the ranks with :class:`UnpaddedShardSampler`, so every sample is scored exactly once and the
    metrics equal one process's; the train loader is left to Lightning's shuffling, padded sampler.
    The train loader is an :class:`EpochSeededLoader` seeded by the trainer's ``EpochSeed`` callback
    from (seed, epoch, rank), so a resumed run replays its epochs exactly with worker processes too.

    Subclasses set ``batch_size``, ``num_workers``, ``pin_memory`` and, in ``setup``, ``train_set``,
    ``val_set`` and ``test_set``; ``collate_fn`` (None: PyTorch's) batches the samples.
    """

    collate_fn: Callable[[list[Any]], Any] | None = None
    batch_size: int
    num_workers: int
    pin_memory: bool
    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, shuffle: bool, collate_fn: Callable | None = None) -> DataLoader:
        """Return a dataloader over ``dataset`` with this module's batch and worker settings (and ``collate_fn`` over its own).

        ``shuffle`` marks the training loader; a fixed-order (evaluation) loader reads only this
        rank's unpadded shard when the trainer's strategy shards data over several ranks.
        """
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested")
        shard = None if self.trainer is None else self.trainer.distributed_sampler_kwargs
        settings = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_fn or self.collate_fn,
        )
        if shuffle:
            return EpochSeededLoader(dataset, shuffle=True, epoch_seed=self._train_seed, **settings)
        sampler = None
        if shard and shard["num_replicas"] > 1:
            sampler = UnpaddedShardSampler(dataset, num_replicas=shard["num_replicas"], rank=shard["rank"])
        return DataLoader(dataset, sampler=sampler, persistent_workers=self.num_workers > 0, **settings)

    def _train_seed(self) -> int | None:
        """Return the seed of the training epoch about to start (None without a trainer or an EpochSeed callback)."""
        return None if self.trainer is None else train_loader_seed(self.trainer)

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
