"""The frame cache: event recordings framed once, stored with tonic's ``DiskCachedDataset``, written atomically, named after every setting."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tonic.cached_dataset import DiskCachedDataset, load_from_disk_cache, save_to_disk_cache
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import ConfigurationError
from .event_datasets import CorruptRecordingError, EventRecordings
from .event_transforms import EventsToFrames

__all__ = ["CACHE_FORMAT", "AtomicDiskCachedDataset", "FramedRecordings", "build_frame_cache", "frame_cache_name"]

# Bumped whenever the frames computed from the same settings change, so old caches are not read.
CACHE_FORMAT = 1


class FramedRecordings(Dataset):
    """``(frames int16 [T, P, H, W], label)`` of each recording."""

    def __init__(self, recordings: EventRecordings, to_frames: EventsToFrames) -> None:
        """
        Args:
            recordings: the recordings to frame.
            to_frames: the events → frames transform applied to each recording when it is read.
        """
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
    the hash of each file's first and last 64 KiB, see :func:`.event_datasets._file_fingerprint`, or the
    generator's settings) and ``CACHE_FORMAT``, so a changed dataset never reads stale frames
    and a copied one keeps its cache.
    """
    width, height, _ = to_frames.output_size
    denoise = f"denoise{to_frames.denoise_filter_time:g}us" if to_frames.denoise_filter_time > 0 else "nodenoise"
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n{to_frames}\n{identity}".encode()).hexdigest()[:12]
    return f"{dataset}-{part}-{to_frames.binning}{to_frames.frames}-{height}x{width}-{denoise}-{digest}"
