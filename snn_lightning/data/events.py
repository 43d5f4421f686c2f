"""Event classification through tonic: CIFAR10-DVS, DVS128 Gesture, N-MNIST, N-Caltech101, saccade digits; SHD and SSC audio spikes.

Recordings are read with tonic's dataset classes (``event_datasets``), turned into event-count
frames with tonic's transforms (``event_transforms.EventsToFrames``), cached on disk with tonic's
``DiskCachedDataset`` (``frame_cache``, written atomically) and batched time-major for the spiking models.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from ..errors import ConfigurationError, DatasetNotFoundError
from .event_datasets import DATASETS, EventDataset, EventRecordings, download_recordings, open_recordings
from .event_transforms import NDA_AUGMENT, Binning, EventsToFrames, FrameAugment, FramesToClip, time_major_collate
from .frame_cache import AtomicDiskCachedDataset, FramedRecordings, build_frame_cache, frame_cache_name
from .split_module import SplitDataModule, TransformedSubset, check_at_least, check_split_settings
from .splits import SPLIT_DESCRIPTIONS, SplitRule, split_recordings

__all__ = ["EventDataModule"]


class EventDataModule(SplitDataModule):
    """Event classification: saccade digits (embedded), N-MNIST, DVS128 Gesture, CIFAR10-DVS, N-Caltech101; SHD and SSC audio.

    Batches are ``(frames [T, B, 2, H, W] float32, labels [B] int64)``: per time step, the count
    of ON and OFF events at each pixel. The audio datasets SHD (20 spoken digits) and SSC (35 speech
    commands) give ``[T, B, 700, 1, 1]``: the spikes of each of the 700 cochlea channels, as the
    channels of a 1×1 frame, the input of spiking FC layers (``arch: shd_mlp``); the image
    augmentations leave such frames as they are. ``digits_saccades`` needs no download (the
    embedded digits moved along N-MNIST's saccades in front of a simulated sensor); the others are read by tonic
    from ``root``. Frames are cached under ``cache_dir`` in a folder named after every setting
    that changes them; the first run builds the cache with a progress bar. CIFAR10-DVS and
    N-Caltech101 ship without a train/test split: ``split`` chooses the rule and the run logs it.

    Each recording is binned into ``frames`` frames, by default the ``time_steps`` of the model the
    trainer runs, so a checkpoint is evaluated on the binning it was trained with. A model evaluated
    at fewer steps (its ``eval_time_steps``) runs the first k frames (latency: what
    ``PerStepAccuracy``'s ``acc_tk`` measures); ``frames`` set to k bins each whole recording into
    k frames instead (each frame spans more of it).

    >>> data = EventDataModule(dataset="digits_saccades", frames=3, binning="n_time_bins", frame_size=11)
    >>> data.num_classes, data.input_shape  # (polarities, height, width) of one frame, before any event is read
    (10, (2, 11, 11))
    >>> data.augment  # NDA's training augmentation unless given (null: none)
    FrameAugment(flip=True, translate=5, rotate=30.0, shear=30.0, drop_event=0.0)
    """

    collate_fn = staticmethod(time_major_collate)  # batches [T, B, P, H, W]

    def __init__(
        self,
        dataset: EventDataset = "digits_saccades",
        root: str = "data",
        download: bool = False,
        frames: int | None = None,
        binning: Binning = "n_event_bins",
        frame_size: int | None = None,
        denoise_filter_time: float = 0.0,
        split: SplitRule | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        augment: FrameAugment | None = NDA_AUGMENT,
        cache_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        """
        Args:
            dataset: which event dataset to load; digits_saccades is generated from the embedded digits and needs no download; shd and ssc are audio spikes, frames of 700 channels.
            root: folder tonic reads the dataset from (e.g. root/NMNIST/Train, root/SHD/shd_train.h5) and downloads it into.
            download: download the dataset into root with tonic when it is missing.
            frames: frames each recording is binned into; null: the time_steps of the model the trainer runs (what it is trained and evaluated with).
            binning: n_event_bins gives every frame the same number of events (most SNN papers); n_time_bins the same duration.
            frame_size: side in pixels of the square frames, made by scaling event coordinates (64 for CIFAR10-DVS in the papers); null keeps the sensor's size.
            denoise_filter_time: tonic Denoise filter time in microseconds (drops events with no neighbouring pixel's event that recent); 0 turns it off; not for shd and ssc, which have no pixels.
            split: official, first_90, random_90 or first_100_test; null means official where the dataset has one, else first_90.
            val_fraction: fraction of the training recordings held out (stratified, seeded) for validation; 0 validates on the test split.
            seed: seed of the random_90 split and of the validation hold-out.
            augment: training augmentation (flip, one of translate/rotate/shear, event drop), e.g. {flip: false, translate: 1}; null turns all of it off.
            cache_dir: folder holding the frame caches; null means root/frames_cache.
            batch_size: samples per batch (per process under DDP).
            num_workers: dataloader worker processes, also used to build the cache; 0 works in the main process; null: the CPU cores this process may use, divided by the training processes on the machine, less one, from 1 to 8.
            pin_memory: pin batches in page-locked memory for faster copies to the GPU.
        """
        super().__init__()
        if dataset not in DATASETS:
            raise ConfigurationError(f"data.dataset is {dataset!r}; expected one of {', '.join(DATASETS)}")
        info = DATASETS[dataset]
        if frames is not None:
            check_at_least("frames", frames, 1, " (null: the model's time_steps)")
        check_split_settings(batch_size, num_workers, val_fraction)
        if denoise_filter_time < 0:
            raise ConfigurationError(f"data.denoise_filter_time is {denoise_filter_time}; set it >= 0 (0 turns it off)")
        if denoise_filter_time > 0 and info.sensor_size[:2] == (1, 1):
            raise ConfigurationError(
                f"data.denoise_filter_time drops events without a neighbouring pixel's, and {info.title}'s "
                f"frames are one pixel, which would drop them all; set it to 0"
            )
        if binning not in get_args(Binning):
            raise ConfigurationError(f"data.binning is {binning!r}; expected n_event_bins or n_time_bins")
        if frame_size is not None and not 1 <= frame_size <= min(info.sensor_size[:2]):
            raise ConfigurationError(
                f"data.frame_size is {frame_size} but the {info.title} sensor is {info.sensor_size[0]}x"
                f"{info.sensor_size[1]}; frames can only be made smaller: set it to "
                f"1..{min(info.sensor_size[:2])} or null"
            )
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
        if isinstance(self.hparams.get("augment"), FrameAugment):
            # Checkpoints hold plain values only (the CLI reads them with weights_only), not the dataclass.
            self.hparams["augment"] = asdict(augment)
        self.dataset = dataset
        self.root = root
        self.download = download
        self.frames = frames
        self.binning = binning
        self.frame_size = frame_size
        self.denoise_filter_time = denoise_filter_time
        self.split_rule: SplitRule = split or ("official" if official else "first_90")
        self.val_fraction = val_fraction
        self.seed = seed
        self.augment = augment
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.all_zero_clips: dict[str, int] = {}
        self._recordings_of: dict[str, EventRecordings] = {}
        self._frames_of: dict[tuple[str, int], AtomicDiskCachedDataset] = {}

    @property
    def num_classes(self) -> int:
        """Number of classes of the chosen dataset (known without reading it)."""
        return DATASETS[self.dataset].num_classes

    @property
    def in_channels(self) -> int:
        """Number of frame channels: 2, the ON and OFF polarities; 700 for SHD and SSC, one per cochlea channel."""
        return DATASETS[self.dataset].sensor_size[2]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Return ``(polarities, height, width)`` of one frame, after any ``frame_size`` downsampling."""
        sensor_width, sensor_height, polarities = DATASETS[self.dataset].sensor_size
        if self.frame_size is None:
            return polarities, sensor_height, sensor_width
        return polarities, self.frame_size, self.frame_size

    def _cache_root(self) -> Path:
        """Return the folder holding the frame caches."""
        return Path(self.cache_dir).expanduser().absolute() if self.cache_dir else self._root() / "frames_cache"

    def frame_count(self) -> int:
        """Return the frames each recording is binned into: ``frames``, or the time_steps of the trainer's model."""
        if self.frames is not None:
            return self.frames
        model = None if self.trainer is None else self.trainer.lightning_module
        if not isinstance(getattr(model, "time_steps", None), int):
            runner = "no trainer runs this data module" if model is None else f"{type(model).__name__} has none"
            raise ConfigurationError(
                f"data.frames is null, which takes the model's time_steps, but {runner}; set data.frames (e.g. 10)"
            )
        return model.time_steps

    def frames_transform(self, frames: int) -> EventsToFrames:
        """Return the deterministic events → frames transform whose output is cached, into ``frames`` frames."""
        size = None if self.frame_size is None else (self.frame_size, self.frame_size)
        sensor_size = DATASETS[self.dataset].sensor_size
        return EventsToFrames(sensor_size, frames, self.binning, size, self.denoise_filter_time)

    def _recordings(self, part: str) -> EventRecordings:
        """Return the recordings of ``part`` (train, test or all), raising a clear error when they are not on disk."""
        if part not in self._recordings_of:
            generated = DATASETS[self.dataset].reader is None
            self._recordings_of[part] = open_recordings(self.dataset, part, None if generated else self._root())
        return self._recordings_of[part]

    def _frames(self, part: str) -> AtomicDiskCachedDataset:
        """Return the cached frames of ``part``, building the cache first when it is incomplete."""
        frames = self.frame_count()
        if (part, frames) not in self._frames_of:
            recordings = self._recordings(part)
            to_frames = self.frames_transform(frames)
            folder = self._cache_root() / frame_cache_name(self.dataset, part, to_frames, recordings.identity())
            cached = AtomicDiskCachedDataset(FramedRecordings(recordings, to_frames), str(folder))
            if not (folder / "complete.json").exists():
                rank_zero_info(f"caching the frames of {DATASETS[self.dataset].title} ({part}) in {folder}")
            zero_clips = build_frame_cache(cached, f"{DATASETS[self.dataset].title} {part} frames", self.workers)
            if zero_clips:
                rank_zero_warn(
                    f"{DATASETS[self.dataset].title} {part}: {zero_clips} of {len(cached)} recordings have no "
                    f"events and are all-zero clips"
                )
            self.all_zero_clips[part] = zero_clips
            self._frames_of[part, frames] = cached
        return self._frames_of[part, frames]

    def _parts(self, stage: str | None) -> list[str]:
        """Return the dataset parts that ``stage`` reads."""
        if self.split_rule != "official":
            return ["all"]
        return ["train"] * self._needs_train(stage) + ["test"] * self._needs_test(stage)

    def prepare_data(self) -> None:
        """Download missing recordings when ``download`` is on, then build the frame caches (runs on one process)."""
        stage = None if self.trainer is None else self.trainer.state.fn.value
        for part in self._parts(stage):
            if self.download and DATASETS[self.dataset].reader is not None:
                try:
                    self._recordings(part)
                except DatasetNotFoundError:
                    download_recordings(self.dataset, part, self._root())
            self._frames(part)

    def _indices(self, side: Literal["train", "test"]) -> tuple[str, np.ndarray]:
        """Return the part and indices of the train or test side of the split."""
        if self.split_rule == "official":
            return side, np.arange(len(self._recordings(side)))
        train, test = split_recordings(self._recordings("all").labels, self.split_rule, self.seed)
        return "all", train if side == "train" else test

    def _test_split(self) -> Dataset:
        """Return the test clips."""
        part, indices = self._indices("test")
        return TransformedSubset(self._frames(part), indices, FramesToClip())

    def _train_split(self) -> tuple[Dataset, Dataset]:
        """Return the augmented training clips and the validation clips held out of them, and log the split."""
        part, indices = self._indices("train")
        kept, held = self._hold_out(self._recordings(part).labels[indices])
        cached = self._frames(part)
        train_frames: Dataset = cached
        if self.augment is not None and self.augment.drop_event > 0:
            to_frames = replace(self.frames_transform(self.frame_count()), drop_event=self.augment.drop_event)
            train_frames = FramedRecordings(self._recordings(part), to_frames)
        validation = "the test split" if self.val_fraction == 0 else f"{len(held)} held out of them"
        rank_zero_info(
            f"{DATASETS[self.dataset].title}: split {self.split_rule} ({SPLIT_DESCRIPTIONS[self.split_rule]}): "
            f"{len(indices)} train and {len(self._indices('test')[1])} test recordings; validation on {validation}"
        )
        return (
            TransformedSubset(train_frames, indices[kept], FramesToClip(self.augment)),
            TransformedSubset(cached, indices[held], FramesToClip()),
        )
