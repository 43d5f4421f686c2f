"""The dataloaders every data module of the package serves over the splits its ``setup`` builds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning
from torch.utils.data import DataLoader, Dataset

from .samplers import UnpaddedShardSampler

__all__ = ["SplitDataModule"]


class SplitDataModule(lightning.LightningDataModule):
    """Base of the data modules: shuffled train loader, fixed-order val/test/predict loaders (predict reads the test split).

    Under DDP (or any strategy that shards data) the val/test/predict loaders split their set over
    the ranks with :class:`UnpaddedShardSampler`, so every sample is scored exactly once and the
    metrics equal one process's; the train loader is left to Lightning's shuffling, padded sampler.

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
        sampler = None
        if not shuffle and shard and shard["num_replicas"] > 1:
            sampler = UnpaddedShardSampler(dataset, num_replicas=shard["num_replicas"], rank=shard["rank"])
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_fn or self.collate_fn,
        )

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
