"""Event-camera classification through tonic: CIFAR10-DVS, DVS128 Gesture, N-MNIST, N-Caltech101, saccade digits.

Recordings are read with tonic's dataset classes (``event_datasets``), turned into event-count
frames with tonic's transforms (``event_transforms.EventsToFrames``), cached on disk with tonic's
``DiskCachedDataset`` (``frame_cache``, written atomically) and batched time-major for the spiking models.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from ..errors import ConfigurationError, DatasetNotFoundError
from .event_datasets import DATASETS, EventDataset, EventRecordings, download_recordings, open_recordings
from .event_transforms import NDA_AUGMENT, Binning, EventsToFrames, FirstFrames, FrameAugment, time_major_collate
from .frame_cache import AtomicDiskCachedDataset, FramedRecordings, build_frame_cache, frame_cache_name
from .split_module import SplitDataModule, TransformedSubset, check_split_settings, check_time_steps
from .splits import SPLIT_DESCRIPTIONS, SplitRule, split_recordings

__all__ = ["EventDataModule"]

# How an evaluation at fewer time steps than trained gets its frames.
FewerSteps = Literal["truncate", "rebin"]


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

    >>> data = EventDataModule(dataset="digits_saccades", time_steps=3, binning="n_time_bins", frame_size=11)
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
        time_steps: int = 10,
        fewer_steps: FewerSteps = "truncate",
        binning_steps: int | None = None,
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
        check_time_steps(time_steps)
        check_split_settings(batch_size, num_workers, val_fraction)
        if denoise_filter_time < 0:
            raise ConfigurationError(f"data.denoise_filter_time is {denoise_filter_time}; set it >= 0 (0 turns it off)")
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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Return ``(polarities, height, width)`` of one frame, after any ``frame_size`` downsampling."""
        width, height, polarities = self.frames_transform().output_size
        return polarities, height, width

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
            generated = DATASETS[self.dataset].reader is None
            self._recordings_of[part] = open_recordings(self.dataset, part, None if generated else self._root())
        return self._recordings_of[part]

    def _frames(self, part: str, binning_steps: int) -> AtomicDiskCachedDataset:
        """Return the cached frames of ``part`` binned into ``binning_steps``, building the cache first when it is incomplete."""
        if (part, binning_steps) not in self._frames_of:
            recordings = self._recordings(part)
            to_frames = self.frames_transform(binning_steps)
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
            self._frames_of[part, binning_steps] = cached
        return self._frames_of[part, binning_steps]

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
            self._frames(part, self.binning_at(stage))

    def _indices(self, side: Literal["train", "test"]) -> tuple[str, np.ndarray]:
        """Return the part and indices of the train or test side of the split."""
        if self.split_rule == "official":
            return side, np.arange(len(self._recordings(side)))
        train, test = split_recordings(self._recordings("all").labels, self.split_rule, self.seed)
        return "all", train if side == "train" else test

    def _test_split(self) -> Dataset:
        """Return the test clips, framed into the binning of this setup."""
        part, indices = self._indices("test")
        return TransformedSubset(self._frames(part, self._set_up_binning), indices, FirstFrames(self.time_steps))

    def _train_split(self) -> tuple[Dataset, Dataset]:
        """Return the augmented training clips and the validation clips held out of them, and log the split."""
        binning, steps = self._set_up_binning, self.time_steps
        part, indices = self._indices("train")
        kept, held = self._hold_out(self._recordings(part).labels[indices])
        cached = self._frames(part, binning)
        train_frames: Dataset = cached
        if self.augment is not None and self.augment.drop_event > 0:
            to_frames = replace(self.frames_transform(binning), drop_event=self.augment.drop_event)
            train_frames = FramedRecordings(self._recordings(part), to_frames)
        validation = "the test split" if self.val_fraction == 0 else f"{len(held)} held out of them"
        rank_zero_info(
            f"{DATASETS[self.dataset].title}: split {self.split_rule} ({SPLIT_DESCRIPTIONS[self.split_rule]}): "
            f"{len(indices)} train and {len(self._indices('test')[1])} test recordings; validation on {validation}"
        )
        return (
            TransformedSubset(train_frames, indices[kept], FirstFrames(steps, self.augment)),
            TransformedSubset(cached, indices[held], FirstFrames(steps)),
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the splits that ``stage`` needs (fit, validate, test or predict; None builds all) and log the split."""
        self._set_up_binning = self.binning_at(stage)
        super().setup(stage)
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
