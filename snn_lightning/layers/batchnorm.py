"""Batch normalisation whose statistics are shared over time steps (tdBN without the threshold scaling)."""

from __future__ import annotations

from torch import Tensor, nn

from snn_lightning.layers.time_distributed import fold_time, unfold_time

__all__ = ["TemporalBatchNorm1d", "TemporalBatchNorm2d"]


class TemporalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d on ``[T, B, C, H, W]``: mean and variance over T, B, H and W, per channel."""

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return the normalised currents ``[T, B, C, H, W]``."""
        return unfold_time(super().forward(fold_time(x_seq)), x_seq.shape[0])


class TemporalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d on ``[T, B, C]``: mean and variance over T and B, per channel."""

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return the normalised currents ``[T, B, C]``."""
        return unfold_time(super().forward(fold_time(x_seq)), x_seq.shape[0])
