"""The two batch layouts a spiking network takes, and what follows from each: its T and its samples.

A batch is either static images ``[B, C, H, W]``, which the network repeats for its own
``time_steps``, or time-major event frames ``[T, B, C, H, W]``, whose T is set by the data.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["is_time_major", "first_samples"]


def is_time_major(batch: Tensor) -> bool:
    """Return whether ``batch`` is a time-major sequence ``[T, B, C, H, W]`` (event frames, currents, spikes).

    Args:
        batch: event frames ``[T, B, C, H, W]`` or static images ``[B, C, H, W]``.
    """
    return batch.ndim == 5


def first_samples(batch: Tensor, count: int) -> Tensor:
    """Return the first ``count`` samples of ``batch``: ``[count, C, H, W]`` images or ``[T, count, C, H, W]`` frames.

    Args:
        batch: event frames ``[T, B, C, H, W]`` or static images ``[B, C, H, W]``.
        count: number of samples to keep (all of them if the batch has fewer).
    """
    return batch[:, :count] if is_time_major(batch) else batch[:count]
