"""Apply stateless layers (conv, linear, pooling) to every time step at once by folding T into B."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["TimeDistributed", "fold_time", "unfold_time"]


def fold_time(x_seq: Tensor) -> Tensor:
    """Return ``[T, B, ...]`` reshaped to ``[T*B, ...]``."""
    return x_seq.flatten(0, 1)


def unfold_time(x: Tensor, time_steps: int) -> Tensor:
    """Return ``[T*B, ...]`` reshaped back to ``[T, B, ...]``."""
    return x.unflatten(0, (time_steps, x.shape[0] // time_steps))


class TimeDistributed(nn.Module):
    """Wrap a layer so it maps ``[T, B, ...]`` to ``[T, B, ...']`` in one call on ``[T*B, ...]``."""

    def __init__(self, module: nn.Module) -> None:
        """
        Args:
            module: a layer without state across time steps (conv, linear, pooling, flatten).
        """
        super().__init__()
        self.module = module

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return the layer applied to each time step, time-major."""
        return unfold_time(self.module(fold_time(x_seq)), x_seq.shape[0])
