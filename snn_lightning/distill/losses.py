"""Classification and distillation losses on time-major student logits, as pure functions.

Student logits ``s`` are ``[T, B, C]``, targets ``y`` are ``[B]``; every function returns a scalar.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["mean_ce", "per_step_ce"]


def mean_ce(s: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Return the cross-entropy of the time-mean logits ``mean_t s[t]`` (the classical SNN loss)."""
    return F.cross_entropy(s.mean(0), y, label_smoothing=label_smoothing)


def per_step_ce(s: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Return ``(1/T) sum_t CE(s[t], y)``, the cross-entropy of every step's logits (TET-style)."""
    time_steps = s.shape[0]
    return F.cross_entropy(s.flatten(0, 1), y.repeat(time_steps), label_smoothing=label_smoothing)
