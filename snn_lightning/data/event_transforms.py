"""Event transforms: events → count frames through tonic, frame augmentation, time-major batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import tonic.transforms
import torch
from torch import Tensor, nn
from torchvision.transforms import v2

__all__ = ["Binning", "EventsToFrames", "FrameAugment", "time_major_collate"]

# tonic's ToFrame argument that fixes the number of frames.
Binning = Literal["n_event_bins", "n_time_bins"]


@dataclass(frozen=True)
class EventsToFrames:
    """Events (tonic structured array) → event-count frames ``int16 [T, P, H, W]``, T = ``time_steps``.

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
    time_steps: int
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
            return np.zeros((self.time_steps, polarities, height, width), dtype=np.int16)
        if (width, height) != tuple(self.sensor_size[:2]):
            events = tonic.transforms.Downsample(sensor_size=self.sensor_size, target_size=(width, height))(events)
        to_frame = tonic.transforms.ToFrame(sensor_size=self.output_size, **{self.binning: self.time_steps})
        return to_frame(events)


class FrameAugment(nn.Module):
    """Training augmentation of a clip ``[T, P, H, W]``, one draw per clip, applied to every frame alike.

    A horizontal flip with probability 0.5, then one operation drawn uniformly from those enabled:
    translate (roll by up to ``translate`` pixels in x and y), rotate (up to ±``rotate`` degrees)
    and shear along x (up to ±``shear`` degrees) — the NDA recipe (Li et al., 2022) that the
    STAA/FSTA CIFAR10-DVS training uses. Draws come from torch's generator, which the dataloader
    seeds per worker and epoch.
    """

    def __init__(self, flip: bool = True, translate: int = 5, rotate: float = 30.0, shear: float = 30.0) -> None:
        """
        Args:
            flip: flip horizontally with probability 0.5.
            translate: largest roll in pixels along x and y (wrapping around, as in NDA); 0 leaves it out.
            rotate: largest rotation in degrees; 0 leaves it out.
            shear: largest x-shear in degrees; 0 leaves it out.
        """
        super().__init__()
        self.flip = flip
        self.translate = translate
        self.operations = nn.ModuleList()
        if rotate > 0:
            self.operations.append(v2.RandomRotation(rotate))
        if shear > 0:
            self.operations.append(v2.RandomAffine(degrees=0, shear=(-shear, shear)))
        self.choices = len(self.operations) + (translate > 0)

    def forward(self, clip: Tensor) -> Tensor:
        """Return the augmented clip ``[T, P, H, W]``."""
        if self.flip and torch.rand(()) < 0.5:
            clip = clip.flip(-1)
        if self.choices == 0:
            return clip
        choice = int(torch.randint(self.choices, ()))
        if choice < len(self.operations):
            return self.operations[choice](clip)
        shift_y, shift_x = torch.randint(-self.translate, self.translate + 1, (2,)).tolist()
        return clip.roll((shift_y, shift_x), dims=(-2, -1))


def time_major_collate(batch: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """Return ``(frames [T, B, P, H, W], labels [B])`` from samples ``(clip [T, P, H, W], label)``."""
    clips, labels = zip(*batch)
    return torch.stack(clips, dim=1), torch.tensor(labels, dtype=torch.int64)
