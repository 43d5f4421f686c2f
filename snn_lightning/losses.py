"""A spiking classifier's cross-entropies on time-major logits ``[T, B, classes]``, as pure functions.

The plain classifier trains on one of them (``SNNClassifier(loss=...)``), and the KD losses in
:mod:`snn_lightning.distill.losses` use them as their CE term. Half-precision logits (bf16, fp16)
are computed in float32; every loss returns a float32 scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["as_float32", "mean_ce", "per_step_ce"]


def as_float32(x: Tensor) -> Tensor:
    """Return ``x`` in float32 when it is half precision (bf16/fp16), else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def mean_ce(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Return the cross-entropy of the time-mean logits ``mean_t logits[t]`` (the classical SNN loss).

    Args:
        logits: logits of every step ``[T, B, classes]``.
        targets: class indices ``[B]`` (or class probabilities ``[B, classes]``).
        label_smoothing: label smoothing of the cross-entropy.

    A right first step and a wrong second one cancel in the mean (logits [1, 1]: CE = ln 2):

    >>> import torch
    >>> logits = torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]]])  # [T=2, B=1, classes=2]
    >>> round(mean_ce(logits, torch.tensor([0])).item(), 4)
    0.6931
    """
    return F.cross_entropy(as_float32(logits).mean(0), targets, label_smoothing=label_smoothing)


def per_step_ce(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Return ``(1/T) sum_t CE(logits[t], targets)``, the cross-entropy of every step's logits (TET-style).

    Args:
        logits: logits of every step ``[T, B, classes]``.
        targets: class indices ``[B]`` (or class probabilities ``[B, classes]``), the target of every step.
        label_smoothing: label smoothing of the cross-entropy.

    The same two steps as in :func:`mean_ce` are scored apart: (ln(1 + e⁻²) + ln(1 + e²)) / 2.

    >>> import torch
    >>> logits = torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]]])
    >>> round(per_step_ce(logits, torch.tensor([0])).item(), 4)
    1.1269
    """
    time_steps = logits.shape[0]
    targets_of_every_step = targets.repeat(time_steps, *[1] * (targets.ndim - 1))
    return F.cross_entropy(as_float32(logits).flatten(0, 1), targets_of_every_step, label_smoothing=label_smoothing)
