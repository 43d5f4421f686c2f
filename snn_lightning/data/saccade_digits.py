"""The embedded digits as event recordings, made the way N-MNIST was recorded: a sensor on three saccades.

N-MNIST (Orchard et al., 2015) moved a DVS camera in front of a screen showing each MNIST digit
along a triangle of three 100 ms saccades; every pixel whose log intensity changed by more than
the sensor's contrast threshold emitted an ON or OFF event. ``saccade_events`` simulates that
sensor on the embedded 8×8 UCI digits (upsampled), so event-based training runs with no download.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from tonic.io import events_struct

from .digits import DIGITS_SHA256, load_digits

__all__ = ["SaccadeDigits", "render_shifted", "saccade_events", "saccade_path"]


def saccade_path(amplitude: float, steps_per_saccade: int) -> np.ndarray:
    """Return the sensor offsets ``[3 * steps_per_saccade + 1, 2]`` (x, y in pixels) of N-MNIST's three saccades.

    The triangle (0, 0) → (a/2, a) → (a, 0) → (0, 0) of side ``a = amplitude``, walked at constant
    speed per saccade, as in N-MNIST's recordings (3.5, 7 and 7 pixels on its 34×34 sensor).
    """
    corners = np.array([[0.0, 0.0], [amplitude / 2, amplitude], [amplitude, 0.0], [0.0, 0.0]])
    fraction = np.linspace(0.0, 1.0, steps_per_saccade + 1)[1:, None]
    legs = [corners[i] + fraction * (corners[i + 1] - corners[i]) for i in range(3)]
    return np.concatenate([corners[:1], *legs])


def _interpolation_matrices(offsets: np.ndarray, image_side: int, sensor_side: int) -> np.ndarray:
    """Return ``[S, sensor_side, image_side]`` matrices placing an image row (or column) at each sub-pixel offset.

    Row ``i`` of the image lands on sensor rows ``floor(o) + i`` and ``floor(o) + i + 1`` with
    weights ``1 - frac(o)`` and ``frac(o)``: bilinear interpolation, one axis at a time.
    """
    whole = np.floor(offsets).astype(np.int64)
    fraction = offsets - whole
    matrices = np.zeros((len(offsets), sensor_side + 1, image_side))
    steps, pixels = np.meshgrid(np.arange(len(offsets)), np.arange(image_side), indexing="ij")
    matrices[steps, whole[:, None] + pixels, pixels] = 1 - fraction[:, None]
    matrices[steps, whole[:, None] + pixels + 1, pixels] += fraction[:, None]
    return matrices[:, :sensor_side]


def render_shifted(image: np.ndarray, offsets: np.ndarray, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """Return ``[S, H, W]``: ``image`` ``[h, w]`` drawn on a dark sensor with its corner at each offset (x, y).

    Sub-pixel offsets interpolate bilinearly, so a slow motion changes intensities gradually, as
    the optics of a real sensor do. The sensor must hold the image moved by the largest offset plus one pixel.
    """
    width, height, _ = sensor_size
    rows = _interpolation_matrices(offsets[:, 1], image.shape[0], height)
    columns = _interpolation_matrices(offsets[:, 0], image.shape[1], width)
    return rows @ image @ columns.transpose(0, 2, 1)


def saccade_events(
    image: np.ndarray,
    sensor_size: tuple[int, int, int],
    rng: np.random.Generator,
    amplitude: float = 4.0,
    steps_per_saccade: int = 10,
    saccade_us: int = 100_000,
    threshold: float = 0.2,
    threshold_mismatch: float = 0.05,
    dark_level: float = 0.1,
) -> np.ndarray:
    """Return the events (tonic's ``x, y, t, p`` array, t in µs, sorted) of ``image`` moved along three saccades.

    At each step the image ``[h, w]`` (intensities in [0, 1]) is rendered one pixel in from the
    sensor's corner plus the next offset of :func:`saccade_path`; a pixel emits one event per
    ``threshold`` its log intensity ``log(dark_level + I)`` moved away from the level of its
    last event, ON (p=1) for an increase, OFF (p=0) for a decrease. Every pixel's threshold is
    scaled by ``1 + N(0, threshold_mismatch)`` (real pixels differ), and the events of a step get
    timestamps drawn uniformly within the step; both draw from ``rng``, so a seeded generator
    gives the same events.
    """
    width, height, _ = sensor_size
    levels = np.log(dark_level + render_shifted(image, 1.0 + saccade_path(amplitude, steps_per_saccade), sensor_size))
    thresholds = threshold * np.clip(1 + threshold_mismatch * rng.standard_normal((height, width)), 0.5, 1.5)
    # The sensor has adapted to the resting image before the first saccade starts.
    reference = levels[0].copy()
    crossings = np.empty((len(levels) - 1, height, width), dtype=np.int64)
    for step, level in enumerate(levels[1:]):
        crossings[step] = np.trunc((level - reference) / thresholds)
        reference += crossings[step] * thresholds
    counts = np.concatenate([np.maximum(-crossings, 0), np.maximum(crossings, 0)])  # OFF steps, then ON steps
    cells = np.nonzero(counts)
    repeats = counts[cells]
    step_us = saccade_us // steps_per_saccade
    events = np.empty(int(repeats.sum()), dtype=events_struct)
    events["x"] = np.repeat(cells[2], repeats)
    events["y"] = np.repeat(cells[1], repeats)
    events["p"] = np.repeat(cells[0] >= len(crossings), repeats)
    step = np.repeat(cells[0] % len(crossings), repeats)
    events["t"] = step * step_us + rng.integers(0, step_us, len(events))
    return events[np.argsort(events["t"], kind="stable")]


class SaccadeDigits:
    """The embedded UCI digits as N-MNIST-style event recordings, in tonic's dataset form.

    ``dataset[i]`` returns ``(events, label)``: a structured array with fields ``x, y, t, p``
    (t in µs over 300 ms, three saccades) and the digit 0–9. Each 8×8 digit is upsampled
    bilinearly to 16×16 and moved by up to 4 pixels on a 22×22 sensor (``sensor_size`` is
    ``(W, H, P)``, as in tonic). Recording ``i`` is generated on demand from a generator seeded
    with ``(seed, split, i)``: the same on every machine, in any order and in any dataloader worker.
    The train/test split is the digits' fixed stratified split (1,438 / 359).
    """

    sensor_size = (22, 22, 2)
    dtype = events_struct
    ordering = dtype.names
    classes = [str(digit) for digit in range(10)]
    image_size = 16

    def __init__(
        self,
        train: bool = True,
        seed: int = 0,
        transform: Callable[[np.ndarray], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        """
        Args:
            train: the digits' train split if True, else the test split.
            seed: seed of the simulated sensor (threshold mismatch, event timing).
            transform: applied to the events, as in tonic datasets.
            target_transform: applied to the label, as in tonic datasets.
        """
        self.train = train
        self.seed = seed
        self.transform = transform
        self.target_transform = target_transform
        split: Literal["train", "test"] = "train" if train else "test"
        images, labels = load_digits(split)
        upsampled = torch.nn.functional.interpolate(
            torch.from_numpy(images), size=self.image_size, mode="bilinear", align_corners=False
        )
        self.images = upsampled[:, 0].clamp(0, 1).numpy().astype(np.float64)
        self.targets = [int(label) for label in labels]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        digits = DIGITS_SHA256[:12]
        return f"SaccadeDigits(split={split}, seed={self.seed}, sensor_size={self.sensor_size}, digits={digits})"

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        """Return ``(events, label)`` of recording ``index``, both passed through the dataset's transforms."""
        rng = np.random.default_rng([self.seed, int(self.train), index])
        events = saccade_events(self.images[index], self.sensor_size, rng)
        target = self.targets[index]
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return events, target
