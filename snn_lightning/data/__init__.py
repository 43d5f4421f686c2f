"""LightningDataModules and datasets: static images (embedded digits, MNIST, Fashion-MNIST, CIFAR, ImageNet, your own image folders) and event-camera recordings."""

from .digits import load_digits
from .event_transforms import EventsToFrames, FrameAugment, time_major_collate
from .events import EventDataModule
from .saccade_digits import SaccadeDigits
from .split_module import SplitDataModule
from .splits import split_recordings
from .static import MixupCutmixCollate, StaticImageDataModule
from .static_datasets import STATIC_DATASETS
from .transforms import Cutout, cutout

__all__ = [
    "STATIC_DATASETS",
    "Cutout",
    "EventDataModule",
    "EventsToFrames",
    "FrameAugment",
    "MixupCutmixCollate",
    "SaccadeDigits",
    "SplitDataModule",
    "StaticImageDataModule",
    "cutout",
    "load_digits",
    "split_recordings",
    "time_major_collate",
]
