"""Input encoders that turn a static image batch into a time-major sequence."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DirectEncoder"]


class DirectEncoder(nn.Module):
    """Direct (repeat) encoding: ``[B, ...]`` becomes ``[T, B, ...]``, the same analog input at every step.

    The first layer then turns the repeated image into currents, as in tdBN, TET and STAA-SNN.
    ``time_steps`` may be changed after construction (evaluate at fewer steps).
    """

    def __init__(self, time_steps: int) -> None:
        """
        Args:
            time_steps: number of steps T to repeat the input for.
        """
        super().__init__()
        self.time_steps = time_steps

    @property
    def time_steps(self) -> int:
        """Number of steps the input is repeated for."""
        return self._time_steps

    @time_steps.setter
    def time_steps(self, value: int) -> None:
        if int(value) != value or value < 1:
            raise ValueError(f"time_steps must be a positive integer, got {value}")
        self._time_steps = int(value)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` repeated along a new leading time axis (a view, no copy)."""
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)
