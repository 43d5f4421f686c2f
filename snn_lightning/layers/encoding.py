"""Input encoders that turn a static image batch into a time-major sequence."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DirectEncoder"]


class DirectEncoder(nn.Module):
    """Direct (repeat) encoding: ``[B, ...]`` becomes ``[T, B, ...]``, the same analog input at every step.

    The first layer then turns the repeated image into currents, as in tdBN, TET and STAA-SNN.
    """

    def __init__(self, time_steps: int) -> None:
        """
        Args:
            time_steps: number of steps T to repeat the input for.
        """
        super().__init__()
        if int(time_steps) != time_steps or time_steps < 1:
            raise ValueError(f"time_steps must be a positive integer, got {time_steps}")
        self.time_steps = int(time_steps)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` repeated along a new leading time axis (a view, no copy)."""
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)
