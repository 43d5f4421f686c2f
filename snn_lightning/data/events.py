"""Event-camera classification through tonic: CIFAR10-DVS, DVS128 Gesture, N-MNIST, N-Caltech101, saccade digits.

Recordings are read with tonic's dataset classes, turned into event-count frames with tonic's
transforms (``event_transforms.EventsToFrames``), cached on disk with tonic's
``DiskCachedDataset`` (written atomically) and batched time-major for the spiking models.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import tonic.datasets
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from tonic.cached_dataset import DiskCachedDataset, load_from_disk_cache, save_to_disk_cache
from tonic.download_utils import extract_archive
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import ConfigurationError, DatasetNotFoundError, SNNLightningError
from .event_transforms import Binning, EventsToFrames, FrameAugment, time_major_collate
from .loaders import SplitDataModule
from .saccade_digits import SaccadeDigits
from .splits import stratified_split

__all__ = [
    "AtomicDiskCachedDataset",
    "CorruptRecordingError",
    "EventDataModule",
    "EventRecordings",
    "build_frame_cache",
    "frame_cache_name",
    "split_recordings",
]

EventDataset = Literal["digits_saccades", "nmnist", "dvsgesture", "cifar10dvs", "ncaltech101"]
SplitRule = Literal["official", "first_90", "random_90", "first_100_test"]
# How an evaluation at fewer time steps than trained gets its frames.
FewerSteps = Literal["truncate", "rebin"]
SPLIT_DESCRIPTIONS = {
    "official": "the dataset's own train/test split",
    "first_90": "per class, the first 90 % of recordings in file-name order train, the last 10 % test",
    "random_90": "per class, a seeded random 90 % train, 10 % test",
    "first_100_test": "per class, the first 100 recordings in file-name order test, the rest train",
}
# Bumped whenever the frames computed from the same settings change, so old caches are not read.
CACHE_FORMAT = 1
_BIN_EVENT_BYTES = 5  # N-MNIST / N-Caltech101 .bin files: 40 bits per event
# Bytes hashed at each end of a recording for the cache key: whole files up to twice this.
_FINGERPRINT_BLOCK = 64 * 1024


class CorruptRecordingError(SNNLightningError, OSError):
    """An event file or cached frame file cannot be read; the message names the file."""


class _NotOnDisk(Exception):
    """Raised instead of a download by the on-disk tonic datasets below; carries the folder searched."""

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.folder = folder


def _has_recordings(self: tonic.dataset.Dataset) -> bool:
    """Return True when the dataset folder holds at least one recording file."""
    return next(Path(self.location_on_system, self.folder_name).rglob(f"*{self.suffix}"), None) is not None


def _refuse_download(self: tonic.dataset.Dataset) -> None:
    """Raise :class:`_NotOnDisk` where tonic would download."""
    raise _NotOnDisk(Path(self.location_on_system, self.folder_name))


def _reads_extracted_copy(cls: type) -> type:
    """Make a tonic dataset subclass index any extracted copy on disk and never download.

    tonic's own check also wants the downloaded archives and the full file count, and downloads
    again when they are missing. The subclass keeps its tonic name, which tonic uses as the folder
    name under ``root``.
    """
    cls.__name__ = cls.__mro__[1].__name__
    cls._check_exists = _has_recordings
    cls.download = _refuse_download
    return cls


@_reads_extracted_copy
class _NMNIST(tonic.datasets.NMNIST):
    suffix = ".bin"


@_reads_extracted_copy
class _DVSGesture(tonic.datasets.DVSGesture):
    suffix = ".npy"


@_reads_extracted_copy
class _CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    suffix = ".aedat4"


@_reads_extracted_copy
class _NCALTECH101(tonic.datasets.NCALTECH101):
    suffix = ".bin"


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


DATASETS: dict[str, _DatasetInfo] = {
    "digits_saccades": _DatasetInfo("saccade digits", 10, SaccadeDigits.sensor_size, ("train", "test")),
    "nmnist": _DatasetInfo(
        "N-MNIST",
        10,
        tonic.datasets.NMNIST.sensor_size,
        ("train", "test"),
        _NMNIST,
        tonic.datasets.NMNIST,
        "NMNIST/Train/<digit>/*.bin and NMNIST/Test/<digit>/*.bin",
        "https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip)",
    ),
    "dvsgesture": _DatasetInfo(
        "DVS128 Gesture",
        11,
        tonic.datasets.DVSGesture.sensor_size,
        ("train", "test"),
        _DVSGesture,
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
        _CIFAR10DVS,
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
        _NCALTECH101,
        tonic.datasets.NCALTECH101,
        "NCALTECH101/Caltech101/<class>/*.bin",
        "https://www.garrickorchard.com/datasets/n-caltech101",
        ("Caltech101.zip",),
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


def _part_arguments(part: str) -> dict[str, Any]:
    """Return the tonic constructor arguments selecting ``part``."""
    return {} if part == "all" else {"train": part == "train"}


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
        for path in self.files:
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


def split_recordings(labels: np.ndarray, rule: SplitRule, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted ``(train, test)`` index arrays of one dataset without an official split.

    ``labels`` are in file-name order. ``first_90``: per class, the first ⌈0.9·n⌉ recordings train
    (SpikingJelly's ``split_to_train_test_set``, deterministic, the STAA/FSTA CIFAR10-DVS split);
    ``random_90``: per class, a ``seed``-ed random 10 % test; ``first_100_test``: per class, the
    first 100 recordings test. Accuracy differs between these splits: report which one was used.
    """
    labels = np.asarray(labels)
    if rule == "random_90":
        return stratified_split(labels, 0.1, seed)
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if rule == "first_90":
            cut = math.ceil(0.9 * len(members))
            train.append(members[:cut])
            test.append(members[cut:])
        elif rule == "first_100_test":
            test.append(members[:100])
            train.append(members[100:])
        else:
            raise ConfigurationError(f"split rule is {rule!r}; expected first_90, random_90 or first_100_test")
    empty = np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(test or [empty]))


class _Framed(Dataset):
    """``(frames int16 [T, P, H, W], label)`` of each recording."""

    def __init__(self, recordings: EventRecordings, to_frames: EventsToFrames) -> None:
        self.recordings = recordings
        self.to_frames = to_frames

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        events, label = self.recordings[index]
        return self.to_frames(events), label


class AtomicDiskCachedDataset(DiskCachedDataset):
    """tonic's ``DiskCachedDataset`` that never reads back a half-written sample.

    tonic writes ``<index>_0.hdf5`` in place, so a run stopped mid-write leaves a truncated file
    that later runs may take for a sample. Here each file is written under a temporary name and
    renamed into place (atomic on one file system): a file under its final name is complete.
    A file that still cannot be read raises :class:`CorruptRecordingError` naming it; a missing
    sample in a folder that cannot be written raises ConfigurationError naming the folder.
    """

    def __getitem__(self, item: int) -> tuple[Any, Any]:
        path = Path(self.cache_path) / f"{item}_0.hdf5"
        if not path.exists():
            data, targets = self.dataset[item]
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            try:
                save_to_disk_cache(data, targets, partial, compress=self.compress)
                os.replace(partial, path)
            except PermissionError as error:
                raise ConfigurationError(
                    f"the frame cache {self.cache_path} is not writable ({error.strerror}) and lacks sample {item}; "
                    f"set data.init_args.cache_dir to a writable folder, or build the cache once where it can be written"
                ) from error
            finally:
                partial.unlink(missing_ok=True)
        try:
            data, targets = load_from_disk_cache(path)
        except (OSError, KeyError) as error:
            raise CorruptRecordingError(
                f"cached frames {path} cannot be read ({error}); delete the folder {self.cache_path} to rebuild it"
            ) from error
        if self.transform is not None:
            data = self.transform(data)
        if self.target_transform is not None:
            targets = self.target_transform(targets)
        return data, targets


class _ZeroClipFlags(Dataset):
    """Whether each cached clip is all zero; reading it writes it to the cache first when missing."""

    def __init__(self, cached: AtomicDiskCachedDataset) -> None:
        self.cached = cached

    def __len__(self) -> int:
        return len(self.cached)

    def __getitem__(self, index: int) -> bool:
        frames, _ = self.cached[index]
        return not np.any(frames)


def build_frame_cache(cached: AtomicDiskCachedDataset, description: str, num_workers: int = 0) -> int:
    """Write every missing sample of ``cached`` (with a progress bar); return how many clips are all zero.

    A ``complete.json`` file written last marks the cache as built, so later calls return at
    once; an interrupted build resumes where it stopped (finished files are complete, see
    :class:`AtomicDiskCachedDataset`). ``num_workers`` processes compute frames in parallel.
    """
    marker = Path(cached.cache_path) / "complete.json"
    if marker.exists():
        return int(json.loads(marker.read_text())["all_zero_clips"])
    loader = DataLoader(_ZeroClipFlags(cached), batch_size=None, num_workers=num_workers)
    progress = tqdm(loader, total=len(cached), desc=description, unit="recording", mininterval=1.0)
    zero_clips = sum(bool(flag) for flag in progress)
    partial = marker.with_name(f"complete.json.{os.getpid()}.partial")
    summary = {"recordings": len(cached), "all_zero_clips": zero_clips, "description": description}
    partial.write_text(json.dumps(summary))
    os.replace(partial, marker)
    return zero_clips


def frame_cache_name(dataset: str, part: str, to_frames: EventsToFrames, identity: str) -> str:
    """Return the cache folder name: every setting that changes the frames, and a hash of the recordings.

    The split is not in the name because frames are cached per recording of a dataset part, so
    every split rule reads the same files; the hash covers the file names and contents (size and
    the hash of each file's first and last 64 KiB, see :func:`_file_fingerprint`, or the
    generator's settings) and ``CACHE_FORMAT``, so a changed dataset never reads stale frames
    and a copied one keeps its cache.
    """
    width, height, _ = to_frames.output_size
    denoise = f"denoise{to_frames.denoise_filter_time:g}us" if to_frames.denoise_filter_time > 0 else "nodenoise"
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n{to_frames}\n{identity}".encode()).hexdigest()[:12]
    return f"{dataset}-{part}-{to_frames.binning}{to_frames.time_steps}-{height}x{width}-{denoise}-{digest}"


class _Clips(Dataset):
    """The samples ``indices`` of ``frames``, cut to their first ``time_steps`` frames, as float32 clips ``[T, P, H, W]``, passed through ``transform``."""

    def __init__(
        self, frames: Dataset, indices: np.ndarray, transform: Callable[[Tensor], Tensor] | None, time_steps: int
    ) -> None:
        self.frames = frames
        self.indices = indices
        self.transform = transform
        self.time_steps = time_steps

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        frames, label = self.frames[int(self.indices[index])]
        clip = torch.from_numpy(np.asarray(frames[: self.time_steps], dtype=np.float32))
        return (clip if self.transform is None else self.transform(clip)), int(label)


class EventDataModule(SplitDataModule):
    """Event-camera classification: saccade digits (embedded), N-MNIST, DVS128 Gesture, CIFAR10-DVS, N-Caltech101.

    Batches are ``(frames [T, B, 2, H, W] float32, labels [B] int64)``: per time step, the count
    of ON and OFF events at each pixel. ``digits_saccades`` needs no download (the embedded digits
    moved along N-MNIST's saccades in front of a simulated sensor); the others are read by tonic
    from ``root``. Frames are cached under ``cache_dir`` in a folder named after every setting
    that changes them; the first run builds the cache with a progress bar. CIFAR10-DVS and
    N-Caltech101 ship without a train/test split: ``split`` chooses the rule and the run logs it.

    Training bins each recording into ``time_steps`` frames, and checkpoints store that binning
    (``state_dict``). Evaluating a checkpoint at fewer steps (``--model.time_steps 2``, linked
    into ``time_steps``) follows ``fewer_steps``: ``truncate`` (latency: the answer after the
    first k frames, what ``PerStepAccuracy``'s ``acc_tk`` measures) feeds the first k frames of
    the trained binning; ``rebin`` bins the whole recording into k frames (each frame spans more).
    """

    collate_fn = staticmethod(time_major_collate)  # batches [T, B, P, H, W]

    def __init__(
        self,
        dataset: EventDataset = "digits_saccades",
        root: str = "data",
        download: bool = False,
        time_steps: int = 10,
        fewer_steps: FewerSteps = "truncate",
        binning_steps: int | None = None,
        binning: Binning = "n_event_bins",
        frame_size: int | None = None,
        denoise_filter_time: float = 0.0,
        split: SplitRule | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        augment: bool = True,
        flip: bool = True,
        translate: int = 5,
        rotate: float = 30.0,
        shear: float = 30.0,
        drop_event: float = 0.0,
        cache_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        """
        Args:
            dataset: which event dataset to load; digits_saccades is generated from the embedded digits and needs no download.
            root: folder tonic reads the dataset from (e.g. root/NMNIST/Train) and downloads it into.
            download: download the dataset into root with tonic when it is missing.
            time_steps: number of frames T the model sees per recording; the CLI links it from model.time_steps.
            fewer_steps: evaluating at fewer time_steps than trained: truncate feeds the first time_steps frames of the trained binning (latency); rebin bins the whole recording into time_steps frames.
            binning_steps: frames each recording is binned into at evaluation under truncate; null: the checkpoint's trained binning when one is restored, else time_steps (training always bins into time_steps).
            binning: n_event_bins gives every frame the same number of events (most SNN papers); n_time_bins the same duration.
            frame_size: side in pixels of the square frames, made by scaling event coordinates (64 for CIFAR10-DVS in the papers); null keeps the sensor's size.
            denoise_filter_time: tonic Denoise filter time in microseconds (drops events with no neighbour that recent); 0 turns it off.
            split: official, first_90, random_90 or first_100_test; null means official where the dataset has one, else first_90.
            val_fraction: fraction of the training recordings held out (stratified, seeded) for validation; 0 validates on the test split.
            seed: seed of the random_90 split and of the validation hold-out.
            augment: augment training clips (flip, one of translate/rotate/shear, event drop); false turns all of it off.
            flip: flip training clips horizontally with probability 0.5.
            translate: largest random roll of a training clip in pixels along x and y; 0 leaves translation out.
            rotate: largest random rotation of a training clip in degrees; 0 leaves rotation out.
            shear: largest random x-shear of a training clip in degrees; 0 leaves shear out.
            drop_event: fraction of events tonic's DropEvent removes from training recordings; > 0 frames them anew every epoch, without the cache.
            cache_dir: folder holding the frame caches; null means root/frames_cache.
            batch_size: samples per batch (per process under DDP).
            num_workers: dataloader worker processes, also used to build the cache; 0 works in the main process.
            pin_memory: pin batches in page-locked memory for faster copies to the GPU.
        """
        super().__init__()
        if dataset not in DATASETS:
            raise ConfigurationError(f"data.dataset is {dataset!r}; expected one of {', '.join(DATASETS)}")
        info = DATASETS[dataset]
        for name, value, least in (
            ("time_steps", time_steps, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("translate", translate, 0),
        ):
            if value < least:
                linked = " (linked from model.time_steps)" if name == "time_steps" else ""
                raise ConfigurationError(f"data.{name} is {value}{linked}; set it to an integer >= {least}")
        for name, value in (("denoise_filter_time", denoise_filter_time), ("rotate", rotate), ("shear", shear)):
            if value < 0:
                raise ConfigurationError(f"data.{name} is {value}; set it >= 0 (0 turns it off)")
        if binning_steps is not None and binning_steps < 1:
            raise ConfigurationError(f"data.binning_steps is {binning_steps}; set it to an integer >= 1 or null")
        if fewer_steps not in get_args(FewerSteps):
            raise ConfigurationError(f"data.fewer_steps is {fewer_steps!r}; expected truncate or rebin")
        if binning not in get_args(Binning):
            raise ConfigurationError(f"data.binning is {binning!r}; expected n_event_bins or n_time_bins")
        if frame_size is not None and not 1 <= frame_size <= min(info.sensor_size[:2]):
            raise ConfigurationError(
                f"data.frame_size is {frame_size} but the {info.title} sensor is {info.sensor_size[0]}x"
                f"{info.sensor_size[1]}; frames can only be made smaller: set it to "
                f"1..{min(info.sensor_size[:2])} or null"
            )
        if not 0 <= val_fraction < 1:
            raise ConfigurationError(
                f"data.val_fraction is {val_fraction}; set it in [0, 1) (0 validates on the test split)"
            )
        if not 0 <= drop_event < 1:
            raise ConfigurationError(f"data.drop_event is {drop_event}; set it in [0, 1) (0 turns it off)")
        official = info.parts == ("train", "test")
        if split is not None and split not in get_args(SplitRule):
            choices = ", ".join(get_args(SplitRule))
            raise ConfigurationError(f"data.split is {split!r}; expected one of {choices} or null")
        if split == "official" and not official:
            raise ConfigurationError(
                f"data.split is 'official' but {info.title} ships without a train/test split; "
                f"set it to first_90 (the papers' choice), random_90 or first_100_test"
            )
        if split not in (None, "official") and official:
            raise ConfigurationError(
                f"data.split is {split!r} but {info.title} has an official train/test split; set it to official or null"
            )
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = root
        self.download = download
        self.time_steps = time_steps
        self.fewer_steps = fewer_steps
        self.binning_steps = binning_steps
        self.trained_binning: int | None = None  # restored from a checkpoint by load_state_dict
        self.binning = binning
        self.frame_size = frame_size
        self.denoise_filter_time = denoise_filter_time
        self.split_rule: SplitRule = split or ("official" if official else "first_90")
        self.val_fraction = val_fraction
        self.seed = seed
        self.augment = augment
        self.flip = flip
        self.translate = translate
        self.rotate = rotate
        self.shear = shear
        self.drop_event = drop_event
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.all_zero_clips: dict[str, int] = {}
        self._recordings_of: dict[str, EventRecordings] = {}
        self._frames_of: dict[tuple[str, int], AtomicDiskCachedDataset] = {}
        self._set_up_binning: int | None = None  # the binning of the splits the last setup built
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes of the chosen dataset (known without reading it)."""
        return DATASETS[self.dataset].num_classes

    @property
    def in_channels(self) -> int:
        """Number of frame channels: 2, the ON and OFF polarities."""
        return DATASETS[self.dataset].sensor_size[2]

    def _root(self) -> Path:
        """Return ``root`` as an absolute path, so messages name exactly where data was looked for."""
        return Path(self.root).expanduser().absolute()

    def _cache_root(self) -> Path:
        """Return the folder holding the frame caches."""
        return Path(self.cache_dir).expanduser().absolute() if self.cache_dir else self._root() / "frames_cache"

    def frames_transform(self, binning_steps: int | None = None) -> EventsToFrames:
        """Return the deterministic events → frames transform whose output is cached, into ``binning_steps`` frames (None: time_steps)."""
        size = None if self.frame_size is None else (self.frame_size, self.frame_size)
        sensor_size, steps = DATASETS[self.dataset].sensor_size, binning_steps or self.time_steps
        return EventsToFrames(sensor_size, steps, self.binning, size, self.denoise_filter_time)

    def binning_at(self, stage: str | None) -> int:
        """Return the frames each recording is binned into at ``stage``: time_steps in fit and under rebin, else the trained binning."""
        if stage == "fit" or self.fewer_steps == "rebin":
            return self.time_steps
        binning = self.binning_steps or self.trained_binning or self.time_steps
        if binning < self.time_steps:
            source = "the checkpoint's trained binning"
            if self.binning_steps:
                source = "data.binning_steps, which the CLI takes from the checkpoint"
            raise ConfigurationError(
                f"data.time_steps is {self.time_steps} (linked from model.time_steps) but the recordings are binned "
                f"into {binning} frames ({source}), and fewer_steps truncate can feed at most those {binning}; "
                f"set --model.time_steps {binning} or less, or --data.fewer_steps rebin to bin each recording "
                f"into {self.time_steps}"
            )
        return binning

    def _log_fewer_steps(self) -> None:
        """Log how an evaluation at fewer steps than trained gets its frames, when the trained binning is known."""
        trained, steps = self.binning_steps or self.trained_binning, self.time_steps
        if trained is None or steps >= trained:
            return
        if self.fewer_steps == "truncate":
            rank_zero_info(
                f"evaluating the first {steps} of {trained} trained frames (truncate); "
                f"--data.fewer_steps rebin re-bins each recording into {steps}"
            )
        else:
            rank_zero_info(
                f"evaluating each recording re-binned into {steps} frames, trained on {trained} (rebin); "
                f"--data.fewer_steps truncate feeds the first {steps} of the {trained} trained frames"
            )

    def _recordings(self, part: str) -> EventRecordings:
        """Return the recordings of ``part`` (train, test or all), raising a clear error when they are not on disk."""
        if part not in self._recordings_of:
            info = DATASETS[self.dataset]
            if info.reader is None:
                source = SaccadeDigits(train=part == "train")
            else:
                try:
                    source = info.reader(str(self._root()), **_part_arguments(part))
                except _NotOnDisk as missing:
                    raise DatasetNotFoundError(
                        f"{info.title} not found: {missing.folder} holds no *{info.reader.suffix} recordings; "
                        f"set data.init_args.download: true, or get it from {info.source} and extract it so that "
                        f"{self._root()} holds {info.layout}"
                    ) from None
            self._recordings_of[part] = EventRecordings(source, info.title, info.num_classes)
        return self._recordings_of[part]

    def _frames(self, part: str, binning_steps: int) -> AtomicDiskCachedDataset:
        """Return the cached frames of ``part`` binned into ``binning_steps``, building the cache first when it is incomplete."""
        if (part, binning_steps) not in self._frames_of:
            recordings = self._recordings(part)
            to_frames = self.frames_transform(binning_steps)
            folder = self._cache_root() / frame_cache_name(self.dataset, part, to_frames, recordings.identity())
            cached = AtomicDiskCachedDataset(_Framed(recordings, to_frames), str(folder))
            if not (folder / "complete.json").exists():
                rank_zero_info(f"caching the frames of {DATASETS[self.dataset].title} ({part}) in {folder}")
            zero_clips = build_frame_cache(cached, f"{DATASETS[self.dataset].title} {part} frames", self.num_workers)
            if zero_clips:
                rank_zero_warn(
                    f"{DATASETS[self.dataset].title} {part}: {zero_clips} of {len(cached)} recordings have no "
                    f"events and are all-zero clips"
                )
            self.all_zero_clips[part] = zero_clips
            self._frames_of[part, binning_steps] = cached
        return self._frames_of[part, binning_steps]

    def _download(self, part: str) -> None:
        """Download ``part`` with tonic into a scratch folder under ``root`` and move it into place."""
        info = DATASETS[self.dataset]
        root = self._root()
        root.mkdir(parents=True, exist_ok=True)
        # tonic downloads and extracts in place; a scratch folder keeps an interrupted download
        # from ever looking like a dataset.
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
            try:
                info.downloader(scratch, **_part_arguments(part))
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

    def _parts(self, stage: str | None) -> list[str]:
        """Return the dataset parts that ``stage`` reads."""
        if self.split_rule != "official":
            return ["all"]
        needs_train = stage in (None, "fit", "validate")
        needs_test = stage in (None, "test", "predict") or self.val_fraction == 0
        return ["train"] * needs_train + ["test"] * needs_test

    def prepare_data(self) -> None:
        """Download missing recordings when ``download`` is on, then build the frame caches (runs on one process)."""
        stage = None if self.trainer is None else self.trainer.state.fn.value
        for part in self._parts(stage):
            if self.download and DATASETS[self.dataset].reader is not None:
                try:
                    self._recordings(part)
                except DatasetNotFoundError:
                    self._download(part)
            self._frames(part, self.binning_at(stage))

    def _indices(self, side: Literal["train", "test"]) -> tuple[str, np.ndarray]:
        """Return the part and indices of the train or test side of the split."""
        if self.split_rule == "official":
            return side, np.arange(len(self._recordings(side)))
        train, test = split_recordings(self._recordings("all").labels, self.split_rule, self.seed)
        return "all", train if side == "train" else test

    def _train_transform(self) -> Callable[[Tensor], Tensor] | None:
        """Return the random clip augmentation of training, or None when it is off."""
        if not self.augment:
            return None
        return FrameAugment(self.flip, self.translate, self.rotate, self.shear)

    def setup(self, stage: str | None = None) -> None:
        """Build the splits that ``stage`` needs (fit, validate, test or predict; None builds all) and log the split."""
        binning, steps = self.binning_at(stage), self.time_steps
        needs_test = stage in (None, "test", "predict") or self.val_fraction == 0
        if needs_test and self.test_set is None:
            part, indices = self._indices("test")
            self.test_set = _Clips(self._frames(part, binning), indices, None, steps)
        if stage in (None, "fit", "validate") and self.val_set is None:
            part, indices = self._indices("train")
            kept, held = stratified_split(self._recordings(part).labels[indices], self.val_fraction, self.seed)
            train_frames: Dataset = self._frames(part, binning)
            if self.augment and self.drop_event > 0:
                to_frames = replace(self.frames_transform(binning), drop_event=self.drop_event)
                train_frames = _Framed(self._recordings(part), to_frames)
            self.train_set = _Clips(train_frames, indices[kept], self._train_transform(), steps)
            held_out = _Clips(self._frames(part, binning), indices[held], None, steps)
            self.val_set = self.test_set if self.val_fraction == 0 else held_out
            validation = "the test split" if self.val_fraction == 0 else f"{len(held)} held out of them"
            rank_zero_info(
                f"{DATASETS[self.dataset].title}: split {self.split_rule} ({SPLIT_DESCRIPTIONS[self.split_rule]}): "
                f"{len(indices)} train and {len(self._indices('test')[1])} test recordings; validation on {validation}"
            )
        self._set_up_binning = binning
        if stage != "fit":
            self._log_fewer_steps()

    def state_dict(self) -> dict[str, Any]:
        """Return the binning training uses, ``{"binning_steps": time_steps}``, which Lightning stores in checkpoints."""
        return {"binning_steps": self.time_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the trained binning from a checkpoint restored for evaluation; rebuild the splits setup built with another."""
        stage = None if self.trainer is None else self.trainer.state.fn.value
        if stage == "fit":  # training bins into time_steps, whatever the checkpoint was trained with
            return
        self.trained_binning = int(state_dict["binning_steps"])
        if self._set_up_binning is None:
            return
        # Lightning restores after setup: splits built before the trained binning was known are built again.
        if self._set_up_binning != self.binning_at(stage):
            self.train_set = self.val_set = self.test_set = None
            self.setup(stage)
        elif self.binning_steps is None:
            self._log_fewer_steps()
