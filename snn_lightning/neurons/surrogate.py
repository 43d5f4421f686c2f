"""Surrogate spike functions: Heaviside forward, smooth derivative backward.

Definitions follow SpikingJelly, so results compare one to one. Each surrogate is a small
object holding its shape parameter; ``surrogate(x)`` returns spikes ``(x >= 0)`` in the dtype of
``x`` and ``surrogate.derivative(x)`` is the pseudo-derivative that replaces the Dirac delta in
the backward pass. Faster kernels reuse ``derivative`` so every backend shares one definition.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["Surrogate", "ATan", "Sigmoid", "Rectangle", "Triangle", "heaviside"]


def heaviside(x: Tensor) -> Tensor:
    """Return the step ``x >= 0`` as 0/1 values in the dtype of ``x``."""
    return (x >= 0).to(x.dtype)


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward; the surrogate's derivative times the incoming gradient backward."""

    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_spikes * ctx.surrogate.derivative(x), None


class Surrogate:
    """Base class: ``__call__`` spikes with a surrogate gradient, ``derivative`` gives it."""

    def __call__(self, x: Tensor) -> Tensor:
        """Return spikes ``x >= 0``; gradients flow through ``derivative``."""
        return _SpikeFunction.apply(x, self)

    def derivative(self, x: Tensor) -> Tensor:
        """Return the surrogate derivative at ``x`` (``x`` is membrane minus threshold)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


class ATan(Surrogate):
    """Arc-tangent surrogate: ``g'(x) = (alpha/2) / (1 + (pi/2 * alpha * x)^2)``.

    >>> import torch
    >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> spikes = ATan(alpha=2.0)(x)
    >>> spikes.tolist()  # the forward is the step x >= 0
    [0.0, 1.0, 1.0]
    >>> spikes.sum().backward()
    >>> [round(g, 4) for g in x.grad.tolist()]  # the backward is g'(x): 1 / (1 + (pi x)^2) for alpha = 2
    [0.2884, 1.0, 0.2884]
    """

    def __init__(self, alpha: float = 2.0) -> None:
        """
        Args:
            alpha: sharpness; larger values approach the Heaviside step.
        """
        self.alpha = float(alpha)

    def derivative(self, x: Tensor) -> Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x).square())


class Sigmoid(Surrogate):
    """Sigmoid surrogate: ``g'(x) = alpha * sig(alpha x) * (1 - sig(alpha x))``."""

    def __init__(self, alpha: float = 4.0) -> None:
        """
        Args:
            alpha: sharpness; larger values approach the Heaviside step.
        """
        self.alpha = float(alpha)

    def derivative(self, x: Tensor) -> Tensor:
        sig = torch.sigmoid(self.alpha * x)
        return self.alpha * sig * (1 - sig)


class Rectangle(Surrogate):
    """Rectangular surrogate: ``g'(x) = 1/width`` where ``|x| < width/2``, else 0 (unit area)."""

    def __init__(self, width: float = 1.0) -> None:
        """
        Args:
            width: width of the window around the threshold that passes gradient.
        """
        if width <= 0:
            raise ValueError(f"Rectangle width must be > 0, got {width}")
        self.width = float(width)

    def derivative(self, x: Tensor) -> Tensor:
        return (x.abs() < self.width / 2).to(x.dtype) / self.width


class Triangle(Surrogate):
    """Triangular surrogate: ``g'(x) = max(0, 1 - |x|/width) / width`` (unit area)."""

    def __init__(self, width: float = 1.0) -> None:
        """
        Args:
            width: half-width of the triangle's base around the threshold.
        """
        if width <= 0:
            raise ValueError(f"Triangle width must be > 0, got {width}")
        self.width = float(width)

    def derivative(self, x: Tensor) -> Tensor:
        return (1 - x.abs() / self.width).clamp(min=0) / self.width
