"""tonic's dataset classes made to read an extracted copy on disk and never download.

tonic's own existence checks also want the downloaded archives (and for the camera datasets the
full file count), and download again when they are missing. The subclasses here keep their tonic
name, which tonic uses as the folder under ``root``, and raise :class:`NotOnDisk` where tonic
would download; ``event_datasets`` turns that into the message that says how to get the data.
A file that cannot be read raises :class:`CorruptRecordingError` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tonic.datasets

from ..errors import SNNLightningError

__all__ = [
    "AUDIO_CHANNELS",
    "CIFAR10DVSOnDisk",
    "CorruptRecordingError",
    "DVSGestureOnDisk",
    "NCALTECH101OnDisk",
    "NMNISTOnDisk",
    "NotOnDisk",
    "SHDOnDisk",
    "SSCOnDisk",
]

# SHD and SSC: the channels of the cochlea model that turned the audio into spikes.
AUDIO_CHANNELS = 700
_AUDIO_EVENT = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int16)])


class CorruptRecordingError(SNNLightningError, OSError):
    """An event file or cached frame file cannot be read; the message names the file."""


class NotOnDisk(Exception):
    """Raised instead of a download by the readers below; the message names the folder searched and what it lacks."""

    def __init__(self, folder: Path, wanted: str) -> None:
        super().__init__(f"{folder} holds no {wanted}")


def _has_recordings(self: tonic.dataset.Dataset) -> bool:
    """Return True when the dataset folder holds at least one recording file."""
    return next(Path(self.location_on_system, self.folder_name).rglob(f"*{self.suffix}"), None) is not None


def _refuse_download(self: tonic.dataset.Dataset) -> None:
    """Raise :class:`NotOnDisk` where tonic would download."""
    raise NotOnDisk(Path(self.location_on_system, self.folder_name), f"*{self.suffix} recordings")


def _reads_extracted_copy(cls: type) -> type:
    """Make a tonic dataset subclass index any extracted copy of its folder of recordings and never download."""
    cls.__name__ = cls.__mro__[1].__name__
    cls._check_exists = _has_recordings
    cls.download = _refuse_download
    return cls


@_reads_extracted_copy
class NMNISTOnDisk(tonic.datasets.NMNIST):
    suffix = ".bin"


@_reads_extracted_copy
class DVSGestureOnDisk(tonic.datasets.DVSGesture):
    suffix = ".npy"


@_reads_extracted_copy
class CIFAR10DVSOnDisk(tonic.datasets.CIFAR10DVS):
    suffix = ".aedat4"


@_reads_extracted_copy
class NCALTECH101OnDisk(tonic.datasets.NCALTECH101):
    suffix = ".bin"


class _AudioSpikesFile:
    """Makes tonic's SHD or SSC read the part's extracted HDF5 file and never download; spikes become events at one pixel.

    One file holds every recording of a part, so ``data`` names it once per recording. Each spike
    (time in s, channel) becomes the event (t in µs, x=0, y=0, p=channel), sorted by time: a 1×1
    sensor whose 700 channels are its polarities, so a frame is ``[700, 1, 1]``, one input per channel.
    """

    sensor_size = (1, 1, AUDIO_CHANNELS)

    def __init__(self, save_to: str, **part: Any) -> None:
        """
        Args:
            save_to: the folder holding ``SHD/`` or ``SSC/``.
            **part: tonic's part selection: ``train`` (SHD) or ``split`` (SSC).
        """
        try:
            super().__init__(save_to, **part)  # tonic opens the file to read its class names
            with h5py.File(self._path(), "r") as file:
                self.targets = file["labels"][()].astype(np.int64)
        except (OSError, KeyError) as error:
            raise CorruptRecordingError(
                f"cannot read {self._path()} ({error}); it is truncated or not {type(self).__name__}'s file: "
                f"unzip it again from {self.url}"
            ) from error
        self.data = [self._path()] * len(self.targets)

    def _path(self) -> str:
        """Return the path of the part's HDF5 file."""
        return os.path.join(self.location_on_system, self.data_filename)

    def _check_exists(self) -> bool:
        """Return True when the part's HDF5 file is in the dataset folder."""
        return os.path.isfile(self._path())

    def download(self) -> None:
        """Raise :class:`NotOnDisk` where tonic would download."""
        raise NotOnDisk(Path(self.location_on_system), self.data_filename)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Return the events of recording ``index`` (see the class) and its label."""
        spikes, label = super().__getitem__(index)
        if len(spikes) and spikes["x"].max() >= AUDIO_CHANNELS:
            raise ValueError(f"recording {index} has a spike of channel {spikes['x'].max()}, past {AUDIO_CHANNELS}")
        events = np.zeros(len(spikes), dtype=_AUDIO_EVENT)
        events["t"], events["p"] = spikes["t"], spikes["x"]
        return events[np.argsort(events["t"], kind="stable")], int(label)


class SHDOnDisk(_AudioSpikesFile, tonic.datasets.SHD):
    pass


class SSCOnDisk(_AudioSpikesFile, tonic.datasets.SSC):
    pass


SHDOnDisk.__name__, SSCOnDisk.__name__ = "SHD", "SSC"  # tonic reads root/<class name>
