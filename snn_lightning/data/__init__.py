"""LightningDataModules and datasets: static images (embedded digits, CIFAR, ImageNet)."""

from .digits import load_digits
from .static import StaticImageDataModule
from .transforms import Cutout, cutout

__all__ = ["Cutout", "StaticImageDataModule", "cutout", "load_digits"]
