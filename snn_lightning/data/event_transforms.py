"""Event transforms: events → count frames through tonic, frame augmentation, time-major batches."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import tonic.transforms
import torch
from torch import Tensor
from torchvision.transforms import v2

from ..errors import ConfigurationError

__all__ = ["NDA_AUGMENT", "Binning", "EventsToFrames", "FrameAugment", "FramesToClip", "time_major_collate"]

# tonic's ToFrame argument that fixes the number of frames.
Binning = Literal["n_event_bins", "n_time_bins"]


@dataclass(frozen=True)
class EventsToFrames:
    """Events (tonic structured array) → event-count frames ``int16 [T, P, H, W]``, T = ``frames``.

    The steps, all tonic's: ``Denoise(filter_time)`` when ``denoise_filter_time > 0``;
    ``DropEvent(drop_event)`` when ``drop_event > 0`` (random: training augmentation only);
    ``Downsample`` to ``frame_size`` (pixel coordinates scaled and floored, so every event still
    counts once: a 128→64 resize sums 2×2 blocks); then ``ToFrame`` with ``binning``:

    * ``n_event_bins`` — every frame holds the same number of events (SpikingJelly's
      ``split_by='number'``, what most SNN papers on CIFAR10-DVS and DVS128 Gesture use);
      robust to recordings of different length or activity.
    * ``n_time_bins`` — every frame spans the same time; keeps the motion's tempo, but a quiet
      stretch gives nearly empty frames.

    ToFrame keeps ``T·⌊N/T⌋`` events with ``n_event_bins`` and drops the events of the final
    timestamp with ``n_time_bins``: at most a handful per recording. A recording with no events
    (left) gives an all-zero clip of the same shape (tonic's own empty-input path swaps H and W).
    """

    sensor_size: tuple[int, int, int]
    frames: int
    binning: Binning = "n_event_bins"
    frame_size: tuple[int, int] | None = None
    denoise_filter_time: float = 0.0
    drop_event: float = 0.0

    @property
    def output_size(self) -> tuple[int, int, int]:
        """Return ``(W, H, P)`` of the frames."""
        width, height = self.frame_size or self.sensor_size[:2]
        return width, height, self.sensor_size[2]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        width, height, polarities = self.output_size
        if len(events) and self.denoise_filter_time > 0:
            events = tonic.transforms.Denoise(filter_time=self.denoise_filter_time)(events)
        if len(events) and self.drop_event > 0:
            events = tonic.transforms.DropEvent(p=self.drop_event)(events)
        if len(events) == 0:
            return np.zeros((self.frames, polarities, height, width), dtype=np.int16)
        if (width, height) != tuple(self.sensor_size[:2]):
            events = tonic.transforms.Downsample(sensor_size=self.sensor_size, target_size=(width, height))(events)
        to_frame = tonic.transforms.ToFrame(sensor_size=self.output_size, **{self.binning: self.frames})
        return to_frame(events)


@dataclass(frozen=True)
class FrameAugment:
    """Training augmentation of event clips ``[T, P, H, W]``, one draw per clip, applied to every frame alike.

    A horizontal flip with probability 0.5, then one operation drawn uniformly from those enabled:
    translate (roll by up to ``translate`` pixels in x and y), rotate (up to ±``rotate`` degrees)
    and shear along x (up to ±``shear`` degrees) — the NDA recipe (Li et al., 2022) that the
    STAA/FSTA CIFAR10-DVS training uses. Draws come from torch's generator, which the dataloader
    seeds per worker and epoch. ``drop_event`` acts before framing: the data module then frames
    the training recordings anew each epoch instead of reading the cache. The defaults are NDA's.

    Args:
        flip: flip horizontally with probability 0.5 (false for data that is not mirror symmetric, such as digits).
        translate: largest roll in pixels along x and y (wrapping around, as in NDA); 0 leaves it out.
        rotate: largest rotation in degrees; 0 leaves it out.
        shear: largest x-shear in degrees; 0 leaves it out.
        drop_event: fraction of events tonic's DropEvent removes from each training recording before framing; 0 turns it off.

    >>> import torch
    >>> clip = torch.zeros(3, 2, 5, 5)  # T = 3 frames, one ON event at the centre of each
    >>> clip[:, 0, 2, 2] = 1
    >>> _ = torch.manual_seed(0)
    >>> moved = FrameAugment(flip=False, translate=1, rotate=0.0, shear=0.0)(clip)
    >>> moved[:, 0].nonzero().tolist()  # one draw for the clip: every frame rolled by the same (-1, +1)
    [[0, 1, 3], [1, 1, 3], [2, 1, 3]]
    """

    flip: bool = True
    translate: int = 5
    rotate: float = 30.0
    shear: float = 30.0
    drop_event: float = 0.0

    def __post_init__(self) -> None:
        if self.translate < 0:
            raise ConfigurationError(
                f"data.augment.translate is {self.translate}; set it to an integer >= 0 (0 leaves it out)"
            )
        for name in ("rotate", "shear"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"data.augment.{name} is {getattr(self, name)}; set it >= 0 (0 leaves it out)")
        if not 0 <= self.drop_event < 1:
            raise ConfigurationError(f"data.augment.drop_event is {self.drop_event}; set it in [0, 1) (0 turns it off)")

    @cached_property
    def _operations(self) -> list[v2.Transform]:
        """Return the enabled random rotation and shear, built once per instance."""
        operations: list[v2.Transform] = []
        if self.rotate > 0:
            operations.append(v2.RandomRotation(self.rotate))
        if self.shear > 0:
            operations.append(v2.RandomAffine(degrees=0, shear=(-self.shear, self.shear)))
        return operations

    def __call__(self, clip: Tensor) -> Tensor:
        """Return the augmented clip ``[T, P, H, W]``."""
        if self.flip and torch.rand(()) < 0.5:
            clip = clip.flip(-1)
        choices = len(self._operations) + (self.translate > 0)
        if choices == 0:
            return clip
        choice = int(torch.randint(choices, ()))
        if choice < len(self._operations):
            return self._operations[choice](clip)
        shift_y, shift_x = torch.randint(-self.translate, self.translate + 1, (2,)).tolist()
        return clip.roll((shift_y, shift_x), dims=(-2, -1))


# NDA's augmentation, the default of the event data module.
NDA_AUGMENT = FrameAugment()


@dataclass(frozen=True)
class FramesToClip:
    """Cached event-count frames ``int16 [T, P, H, W]`` → the float32 clip, augmented when ``augment`` is set.

    Args:
        augment: the random training augmentation; None for evaluation clips.
    """

    augment: FrameAugment | None = None

    def __call__(self, frames: np.ndarray) -> Tensor:
        clip = torch.from_numpy(np.asarray(frames, dtype=np.float32))
        return clip if self.augment is None else self.augment(clip)


def time_major_collate(batch: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """Return ``(frames [T, B, P, H, W], labels [B])`` from samples ``(clip [T, P, H, W], label)``."""
    clips, labels = zip(*batch)
    return torch.stack(clips, dim=1), torch.tensor(labels, dtype=torch.int64)
