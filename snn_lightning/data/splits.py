"""Seeded, stratified index splits: the fixed digits train/test split, every validation hold-out, and the train/test rules of event datasets without an official split."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ..errors import ConfigurationError

__all__ = ["SPLIT_DESCRIPTIONS", "SplitRule", "split_recordings", "stratified_split"]

SplitRule = Literal["official", "first_90", "random_90", "first_100_test"]
SPLIT_DESCRIPTIONS = {
    "official": "the dataset's own train/test split",
    "first_90": "per class, the first 90 % of recordings in file-name order train, the last 10 % test",
    "random_90": "per class, a seeded random 90 % train, 10 % test",
    "first_100_test": "per class, the first 100 recordings in file-name order test, the rest train",
}


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(kept, held)`` sorted index arrays, holding out ``round(fraction * n_c)`` samples of each class ``c``.

    The same ``labels``, ``fraction`` and ``seed`` always give the same split, on any machine and
    in every DDP process, so no process needs to broadcast its indices.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_held = int(round(fraction * len(members)))
        held.append(members[:n_held])
        kept.append(members[n_held:])
    empty = np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(kept or [empty])), np.sort(np.concatenate(held or [empty]))


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
