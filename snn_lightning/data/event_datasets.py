"""The event datasets: what the data module knows of each, tonic readers of their extracted copies, and their recordings.

tonic's dataset classes read CIFAR10-DVS, DVS128 Gesture, N-MNIST, N-Caltech101 and the audio spikes
of SHD and SSC; their subclasses in ``tonic_readers`` read any extracted copy on disk and never
download by themselves. The saccade digits are generated in memory (:class:`SaccadeDigits`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tonic.datasets
from tonic.download_utils import extract_archive
from torch.utils.data import Dataset

from ..errors import ConfigurationError, DatasetNotFoundError
from .saccade_digits import SaccadeDigits
from .tonic_readers import (
    CIFAR10DVSOnDisk,
    CorruptRecordingError,
    DVSGestureOnDisk,
    NCALTECH101OnDisk,
    NMNISTOnDisk,
    NotOnDisk,
    SHDOnDisk,
    SSCOnDisk,
)

__all__ = [
    "DATASETS",
    "CorruptRecordingError",
    "EventDataset",
    "EventRecordings",
    "download_recordings",
    "open_recordings",
]

EventDataset = Literal["digits_saccades", "nmnist", "dvsgesture", "cifar10dvs", "ncaltech101", "shd", "ssc"]

_BIN_EVENT_BYTES = 5  # N-MNIST / N-Caltech101 .bin files: 40 bits per event
# Bytes hashed at each end of a recording for the cache key: whole files up to twice this.
_FINGERPRINT_BLOCK = 64 * 1024


@dataclass(frozen=True)
class _DatasetInfo:
    """What the data module needs to know about one dataset before reading it."""

    title: str
    num_classes: int
    sensor_size: tuple[int, int, int]
    parts: tuple[str, ...]  # ("train", "test") for an official split, ("all",) when there is none
    reader: type | None = None  # tonic subclass reading the extracted copy; None: generated in memory
    downloader: type | None = None  # tonic's own class, which downloads
    layout: str = ""
    source: str = ""
    inner_archives: tuple[str, ...] = ()  # archives inside the download that tonic leaves unextracted


DATASETS: dict[EventDataset, _DatasetInfo] = {
    "digits_saccades": _DatasetInfo("saccade digits", 10, SaccadeDigits.sensor_size, ("train", "test")),
    "nmnist": _DatasetInfo(
        "N-MNIST",
        10,
        tonic.datasets.NMNIST.sensor_size,
        ("train", "test"),
        NMNISTOnDisk,
        tonic.datasets.NMNIST,
        "NMNIST/Train/<digit>/*.bin and NMNIST/Test/<digit>/*.bin",
        "https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip)",
    ),
    "dvsgesture": _DatasetInfo(
        "DVS128 Gesture",
        11,
        tonic.datasets.DVSGesture.sensor_size,
        ("train", "test"),
        DVSGestureOnDisk,
        tonic.datasets.DVSGesture,
        "DVSGesture/ibmGestureTrain/<user>_<lighting>/<label>.npy and DVSGesture/ibmGestureTest/...",
        f"tonic's preprocessed copy, {tonic.datasets.DVSGesture.train_url} and {tonic.datasets.DVSGesture.test_url} "
        "(the original recordings at https://research.ibm.com/dvsgesture are not in this form)",
    ),
    "cifar10dvs": _DatasetInfo(
        "CIFAR10-DVS",
        10,
        tonic.datasets.CIFAR10DVS.sensor_size,
        ("all",),
        CIFAR10DVSOnDisk,
        tonic.datasets.CIFAR10DVS,
        "CIFAR10DVS/<class>/*.aedat4",
        f"{tonic.datasets.CIFAR10DVS.url} (tonic's .aedat4 copy)",
    ),
    "ncaltech101": _DatasetInfo(
        # Recordings differ in size; 240×180 holds every one (tonic shifts each to start at x=y=0).
        "N-Caltech101",
        101,
        (240, 180, 2),
        ("all",),
        NCALTECH101OnDisk,
        tonic.datasets.NCALTECH101,
        "NCALTECH101/Caltech101/<class>/*.bin",
        "https://www.garrickorchard.com/datasets/n-caltech101",
        ("Caltech101.zip",),
    ),
    "shd": _DatasetInfo(
        "SHD",
        20,
        SHDOnDisk.sensor_size,
        ("train", "test"),
        SHDOnDisk,
        tonic.datasets.SHD,
        "SHD/shd_train.h5 and SHD/shd_test.h5",
        f"{tonic.datasets.SHD.base_url} ({tonic.datasets.SHD.train_zip}, {tonic.datasets.SHD.test_zip})",
    ),
    "ssc": _DatasetInfo(
        "SSC",
        35,
        SSCOnDisk.sensor_size,
        ("train", "test"),
        SSCOnDisk,
        tonic.datasets.SSC,
        "SSC/ssc_train.h5 and SSC/ssc_test.h5",
        f"{tonic.datasets.SSC.base_url} ({tonic.datasets.SSC.train_zip}, {tonic.datasets.SSC.test_zip})",
    ),
}


def _file_fingerprint(path: str, block: int = _FINGERPRINT_BLOCK) -> str:
    """Return ``"<size> <blake2b>"`` of a file, hashing its first and last ``block`` bytes (all of it when small).

    The fingerprint reads only the content, never the modification time, so a copy (``cp``
    without ``-p``, rsync, a fresh download) has the same fingerprint and a replaced file a new
    one, even when it has the same size and time. A change confined to the middle of a file
    larger than ``2 * block`` is missed; event recordings are replaced whole, not edited.
    """
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size <= 2 * block:
            digest.update(file.read())
        else:
            digest.update(file.read(block))
            file.seek(size - block)
            digest.update(file.read(block))
    return f"{size} {digest.hexdigest()}"


def _part_arguments(dataset: EventDataset, part: str) -> dict[str, Any]:
    """Return the tonic constructor arguments selecting ``part``: SSC's split, the others' train flag."""
    if part == "all":
        return {}
    return {"split": part} if dataset == "ssc" else {"train": part == "train"}


class EventRecordings(Dataset):
    """The recordings ``(events, label)`` of one dataset part, in file-name order.

    tonic lists files in directory order, which differs between file systems; sorting makes
    "the first 90 %" and the cache indices the same everywhere. Class-name labels (N-Caltech101)
    become indices into the sorted class names. A file that cannot be read raises
    :class:`CorruptRecordingError` naming it; a 0-byte ``.bin`` file is a recording with no events.
    """

    def __init__(self, source: Any, title: str, num_classes: int) -> None:
        """
        Args:
            source: a tonic dataset (file paths in ``data``) or :class:`SaccadeDigits`.
            title: the dataset's name in messages.
            num_classes: the number of classes the labels must cover.
        """
        self.source = source
        self.title = title
        files = getattr(source, "data", None)
        if files is None:
            self.order = np.arange(len(source))
        else:
            self.order = np.argsort(np.asarray(files, dtype=str), kind="stable")
        self.files: list[str] | None = None if files is None else [files[i] for i in self.order]
        targets = [source.targets[i] for i in self.order]
        if targets and isinstance(targets[0], str):
            classes = sorted(set(targets))
            if len(classes) != num_classes:
                raise DatasetNotFoundError(
                    f"{title} at {source.location_on_system} has {len(classes)} class folders, expected "
                    f"{num_classes}; extract the complete dataset there"
                )
            targets = [classes.index(name) for name in targets]
        self.labels = np.asarray(targets, dtype=np.int64)
        self._identity: str | None = None

    def identity(self) -> str:
        """Return text that changes when the recordings do: file names and contents, or the generator's settings.

        Each file contributes its path and :func:`_file_fingerprint` (up to 128 KiB read per file),
        computed once per instance.
        """
        if self._identity is None:
            self._identity = repr(self.source) if self.files is None else self._files_identity()
        return self._identity

    def _files_identity(self) -> str:
        """Return one line per file: its path under the dataset folder and its fingerprint."""
        root = self.source.location_on_system
        lines = []
        for path in dict.fromkeys(self.files):  # once per file: SHD's and SSC's hold every recording
            try:
                lines.append(f"{os.path.relpath(path, root)} {_file_fingerprint(path)}")
            except OSError as error:
                raise CorruptRecordingError(
                    f"cannot read {self.title} recording {path} to check the frame cache against it: "
                    f"{error.strerror or error}; make it readable, or delete it"
                ) from error
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Return the events (tonic structured array) and label of recording ``index``."""
        label = int(self.labels[index])
        if self.files is None:
            return self.source[int(self.order[index])][0], label
        path = self.files[index]
        try:
            if path.endswith(".bin"):
                size = os.path.getsize(path)
                if size == 0:
                    return np.empty(0, dtype=self.source.dtype), label
                if size % _BIN_EVENT_BYTES:
                    raise ValueError(f"its {size} bytes are not a whole number of {_BIN_EVENT_BYTES}-byte events")
            events, _ = self.source[int(self.order[index])]
            _check_on_sensor(events, self.source.sensor_size)
        except ImportError as error:
            raise ConfigurationError(
                f"reading {self.title} file {path} needs the Python package {error.name!r}: pip install {error.name}"
            ) from error
        except Exception as error:
            raise CorruptRecordingError(
                f"cannot read {self.title} recording {path}: {error}; the file is damaged or truncated: "
                f"replace it from the original archive, or delete it"
            ) from error
        return events, label


def _check_on_sensor(events: np.ndarray, sensor_size: tuple[int, int, int] | None) -> None:
    """Raise ValueError naming the first event whose x or y lies outside ``sensor_size`` ``(W, H, P)`` (None: sizes vary, no check).

    Garbage bytes in an N-MNIST ``.bin`` decode to events anywhere in 0..255, and a damaged
    ``.npy`` to any coordinate; framing them would fail with an index error naming no file.
    """
    if sensor_size is None:
        return
    width, height, _ = sensor_size
    outside = (events["x"].astype(np.int64) >= width) | (events["y"].astype(np.int64) >= height)
    outside |= (events["x"].astype(np.int64) < 0) | (events["y"].astype(np.int64) < 0)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{int(outside.sum())} of its {len(events)} events lie outside the {width}x{height} sensor "
            f"(event {first} is at x={events['x'][first]}, y={events['y'][first]})"
        )


def open_recordings(dataset: EventDataset, part: str, root: Path | None) -> EventRecordings:
    """Return the recordings of ``part`` (train, test or all) of ``dataset``, raising a clear error when they are not on disk.

    Args:
        dataset: the dataset's name, a key of :data:`DATASETS`.
        part: train, test or all (the datasets without an official split).
        root: the folder tonic reads the dataset from; None for the generated saccade digits, which need none.
    """
    info = DATASETS[dataset]
    if info.reader is None:
        source = SaccadeDigits(train=part == "train")
    else:
        try:
            source = info.reader(str(root), **_part_arguments(dataset, part))
        except NotOnDisk as missing:
            raise DatasetNotFoundError(
                f"{info.title} not found: {missing}; "
                f"set data.init_args.download: true, or get it from {info.source} and extract it so that "
                f"{root} holds {info.layout}"
            ) from None
    return EventRecordings(source, info.title, info.num_classes)


def download_recordings(dataset: EventDataset, part: str, root: Path) -> None:
    """Download ``part`` of ``dataset`` with tonic into a scratch folder under ``root`` and move it into place."""
    info = DATASETS[dataset]
    root.mkdir(parents=True, exist_ok=True)
    # tonic downloads and extracts in place; a scratch folder keeps an interrupted download
    # from ever looking like a dataset.
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        try:
            info.downloader(scratch, **_part_arguments(dataset, part))
        except (OSError, RuntimeError) as error:
            raise DatasetNotFoundError(
                f"could not download {info.title} into {root} ({error}); get it from {info.source} "
                f"and extract it so that {root} holds {info.layout}"
            ) from error
        downloaded = Path(scratch) / info.downloader.__name__
        for archive in info.inner_archives:
            if (downloaded / archive).is_file():
                extract_archive(str(downloaded / archive))
        target = root / info.downloader.__name__
        target.mkdir(exist_ok=True)
        for entry in downloaded.iterdir():
            if not (target / entry.name).exists():
                os.replace(entry, target / entry.name)
