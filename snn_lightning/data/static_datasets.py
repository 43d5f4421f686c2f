"""The static image datasets in one table: per name, its title, classes, channels, image side and normalisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .digits import DIGITS_MEAN, DIGITS_STD

__all__ = ["AugmentPolicy", "FOLDER_DATASETS", "STATIC_DATASETS", "StaticDataset", "StaticDatasetInfo", "normalization"]

StaticDataset = Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet", "image_folder"]
# The automatic augmentation policies of torchvision that ``auto_augment`` applies to training images.
AugmentPolicy = Literal["autoaugment", "randaugment", "trivialaugment"]


@dataclass(frozen=True)
class StaticDatasetInfo:
    """What the data module knows about one static dataset before reading it."""

    title: str
    num_classes: int | None  # None: the class folders of the data module's root (image_folder)
    channels: int | None  # None: read from the first training image (image_folder)
    side: int | None  # of the square images the data module yields; None: the data module's image_size (folders)
    normalization: tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std) of the training set
    in_memory: bool = False  # shipped as tensors: dataloader workers would only add their start-up time


# torchvision's ImageNet statistics, which image folders of colour images use too.
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# CIFAR stds are the true per-pixel stds (not the (0.2023, 0.1994, 0.2010) some repositories copy);
# MNIST's and Fashion-MNIST's are the pixel statistics of their 60,000 training images.
STATIC_DATASETS: dict[str, StaticDatasetInfo] = {
    "digits": StaticDatasetInfo("digits", 10, 1, 8, (DIGITS_MEAN, DIGITS_STD), in_memory=True),
    "mnist": StaticDatasetInfo("MNIST", 10, 1, 28, ((0.1307,), (0.3081,))),
    "fashion_mnist": StaticDatasetInfo("Fashion-MNIST", 10, 1, 28, ((0.2860,), (0.3530,))),
    "cifar10": StaticDatasetInfo("CIFAR-10", 10, 3, 32, ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))),
    "cifar100": StaticDatasetInfo("CIFAR-100", 100, 3, 32, ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))),
    "imagenet": StaticDatasetInfo("ImageNet", 1000, 3, None, IMAGENET_NORMALIZATION),
    "image_folder": StaticDatasetInfo("image folder", None, None, None, IMAGENET_NORMALIZATION),
}
# The datasets read from root/train/<class>/* and root/val/<class>/* with torchvision's ImageFolder.
FOLDER_DATASETS = ("imagenet", "image_folder")


def normalization(dataset: StaticDataset, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the per-channel ``(mean, std)`` of ``dataset``'s ``channels``-channel images: the table's, or 0.5 and 0.5 for grey image folders."""
    if dataset == "image_folder" and channels == 1:
        return (0.5,), (0.5,)
    return STATIC_DATASETS[dataset].normalization
