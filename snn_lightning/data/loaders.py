"""The training dataloader whose sample order and worker seeds follow from the epoch alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

__all__ = ["EpochSeededLoader"]


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
