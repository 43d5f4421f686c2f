"""The embedded UCI handwritten digits: 1,797 real 8x8 images in 10 classes, shipped inside the package.

Small enough to train a spiking network on a laptop CPU in seconds (the quickstart config and the
tests use it), real enough that accuracy means something. Source and licence: ``embedded/PROVENANCE.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from .splits import stratified_split

__all__ = [
    "DIGITS_FILE",
    "DIGITS_MEAN",
    "DIGITS_SHA256",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "DIGITS_STD",
    "load_digits",
]

DIGITS_FILE = Path(__file__).parent / "embedded" / "digits.csv.gz"
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 1998
# Pixel mean and std of the train split after scaling to [0, 1]; tests recompute them.
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3759,)


def load_digits(split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of one split: float32 ``[N, 1, 8, 8]`` in [0, 1] and int64 ``[N]``.

    The split is fixed: 20 % of every class (seed 1998) is the test split, 359 images;
    the remaining 1,438 are the train split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    # Rows are 64 pixel values 0..16 followed by the label.
    table = np.loadtxt(DIGITS_FILE, delimiter=",", dtype=np.int64)
    images = (table[:, :64].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = table[:, 64]
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    indices = train if split == "train" else test
    return images[indices], labels[indices]
