"""Bring your own data: a ``LightningDataModule`` with ``num_classes`` and ``in_channels``, here made-up bar images.

From the repository root (the CLI imports the config's ``examples.…`` class paths from the working folder):

    snn-lightning fit --config examples/custom_datamodule.yaml

What the CLI and the package's models need of a data module:

* ``num_classes`` and ``in_channels``, readable right after ``__init__`` (before any data is read):
  the CLI links them into ``model.num_classes`` / ``model.in_channels``;
* batches ``(inputs, labels)``: static images ``[B, C, H, W]`` (an SNN repeats them over its T steps)
  or time-major frames ``[T, B, C, H, W]``, and class indices ``[B]`` (or class probabilities
  ``[B, classes]``);
* ``train_dataloader`` and ``val_dataloader`` for fit, ``test_dataloader`` for test;
  ``batch_size`` is optional (``model.lr_reference_batch`` reads it).

Replace :func:`bars` by reading your files; keep the rest.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset


def bars(count: int, size: int, noise: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Return ``count`` noisy ``[1, size, size]`` images of one bar at a random place, and its orientation (0 horizontal, 1 vertical)."""
    labels = torch.randint(0, 2, (count,), generator=generator)
    places = torch.randint(0, size, (count, 1, 1), generator=generator)
    rows, columns = torch.arange(size).view(1, size, 1), torch.arange(size).view(1, 1, size)
    lines = torch.where(labels.view(-1, 1, 1) == 0, rows == places, columns == places).float()
    images = lines + noise * torch.randn(count, size, size, generator=generator)
    return images.unsqueeze(1), labels


class BarsDataModule(L.LightningDataModule):
    """Noisy images of a horizontal or a vertical bar (2 classes, 1 channel): train, validation and test splits made from a seed."""

    def __init__(
        self, train_samples: int = 1024, size: int = 8, noise: float = 0.5, batch_size: int = 32, seed: int = 0
    ) -> None:
        """
        Args:
            train_samples: images in the training split; validation and test get a quarter as many each.
            size: image side in pixels.
            noise: standard deviation of the Gaussian noise added to the 0/1 bar image.
            batch_size: samples per batch.
            seed: seed of the images, the same on every process.
        """
        super().__init__()
        self.num_classes = 2
        self.in_channels = 1
        self.train_samples = train_samples
        self.size = size
        self.noise = noise
        self.batch_size = batch_size
        self.seed = seed
        self.splits: dict[str, TensorDataset] = {}

    def setup(self, stage: str) -> None:
        """Make the three splits (once)."""
        if self.splits:
            return
        generator = torch.Generator().manual_seed(self.seed)
        counts = {"train": self.train_samples, "val": self.train_samples // 4, "test": self.train_samples // 4}
        self.splits = {
            split: TensorDataset(*bars(count, self.size, self.noise, generator)) for split, count in counts.items()
        }

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.batch_size)
