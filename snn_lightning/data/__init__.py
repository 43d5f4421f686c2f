"""LightningDataModules and datasets: static images (embedded digits, MNIST, Fashion-MNIST, CIFAR, ImageNet)."""

from .digits import load_digits
from .event_transforms import EventsToFrames, FrameAugment, time_major_collate
from .events import EventDataModule, split_recordings
from .saccade_digits import SaccadeDigits
from .static import MixupCutmixCollate, StaticImageDataModule
from .transforms import Cutout, cutout

__all__ = [
    "Cutout",
    "EventDataModule",
    "EventsToFrames",
    "FrameAugment",
    "MixupCutmixCollate",
    "SaccadeDigits",
    "StaticImageDataModule",
    "cutout",
    "load_digits",
    "split_recordings",
    "time_major_collate",
]
