"""Seeded, stratified index splits: the fixed digits train/test split and every validation hold-out."""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_split"]


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
