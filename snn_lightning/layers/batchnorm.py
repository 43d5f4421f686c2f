"""Batch normalisation whose statistics are shared over time steps (tdBN without the threshold scaling)."""

from __future__ import annotations

from typing import Any

from torch import nn

from snn_lightning.layers.time_distributed import TimeDistributed

__all__ = ["TemporalBatchNorm1d", "TemporalBatchNorm2d"]


class _TemporalBatchNorm(TimeDistributed):
    """A BatchNorm held as a child and applied to ``[T*B, ...]``, so its statistics are shared over T.

    The fold lives in this wrapper, not in the BatchNorm: ``SyncBatchNorm.convert_sync_batchnorm``
    (``trainer.sync_batchnorm: true``) replaces the child by a ``SyncBatchNorm`` and the fold stays.
    The child's attributes (``weight``, ``running_mean``, ``eps``, …) read through the wrapper.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints written while this class was a BatchNorm subclass name the tensors without "module.".
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if prefix + name in state_dict:
                state_dict[f"{prefix}module.{name}"] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class TemporalBatchNorm2d(_TemporalBatchNorm):
    """BatchNorm2d on ``[T, B, C, H, W]``: mean and variance over T, B, H and W, per channel."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        """
        Args:
            num_features: number of channels C.
            eps: added to the variance for numerical stability.
            momentum: weight of the current batch in the running statistics; None keeps a cumulative average.
        """
        super().__init__(nn.BatchNorm2d(num_features, eps, momentum))


class TemporalBatchNorm1d(_TemporalBatchNorm):
    """BatchNorm1d on ``[T, B, C]``: mean and variance over T and B, per channel."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        """
        Args:
            num_features: number of channels C.
            eps: added to the variance for numerical stability.
            momentum: weight of the current batch in the running statistics; None keeps a cumulative average.
        """
        super().__init__(nn.BatchNorm1d(num_features, eps, momentum))
