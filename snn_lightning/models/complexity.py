"""Model complexity: parameter count and multiply-accumulates (MACs) of the conv and linear layers.

MACs are counted from the layer shapes seen in one forward pass (forward hooks): a convolution
costs ``output elements × in_channels/groups × kernel volume``, a linear layer ``output
elements × in_features``. Other operations (BN, pooling, attention's softmax and products,
neurons) are not counted, as is usual in SNN papers. Energy estimates weight these MACs by each
layer's input firing rate (SOPs).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["Complexity", "measure_complexity", "probing"]


@dataclass(frozen=True)
class Complexity:
    """Parameter count and MACs of one sample through a network over ``time_steps`` steps."""

    parameters: int
    time_steps: int
    layer_macs: dict[str, int]  # module name -> MACs of one sample over all time steps, in the order first called
    layer_elements: dict[str, tuple[int, int]]  # module name -> (input, output) elements of one sample over all steps

    @property
    def total_macs(self) -> int:
        """MACs of one sample over all time steps."""
        return sum(self.layer_macs.values())

    @property
    def macs_per_step(self) -> float:
        """MACs of one sample per time step."""
        return self.total_macs / self.time_steps

    def __str__(self) -> str:
        return (
            f"{_readable(self.parameters)} parameters, {_readable(self.macs_per_step)} MACs per step, "
            f"{_readable(self.total_macs)} MACs over T={self.time_steps}"
        )


def _readable(count: float) -> str:
    """Return ``count`` with a K, M or G suffix and 3 significant digits (``12.6 M``)."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {suffix}"
    return f"{count:.3g}"


# The layers whose multiply-accumulates are counted: every convolution (1-D to 3-D) and linear layer.
_COUNTED = (nn.Linear, nn.modules.conv._ConvNd)


def _layer_macs(module: nn.Module, output: Tensor) -> int:
    """Return the MACs of one call of a conv or linear ``module`` that produced ``output``."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


@contextmanager
def probing(model: nn.Module, handles: list[RemovableHandle]) -> Iterator[None]:
    """Run the body with ``model`` in evaluation mode, then remove the hook ``handles`` and restore every module's training flag."""
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training


def measure_complexity(model: nn.Module, sample: Tensor, time_steps: int = 1) -> Complexity:
    """Return the parameter count and the conv/linear MACs of ``model`` on one input.

    ``sample`` holds one sample (batch size 1: an image ``[1, C, H, W]``, or frames
    ``[T, 1, C, H, W]``) and ``time_steps`` is the number of steps the model runs for it. The
    forward pass runs without gradients in evaluation mode (BN statistics untouched); the
    modules' training flags are restored afterwards.
    """
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    layer_macs: dict[str, int] = {}
    layer_elements: dict[str, tuple[int, int]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):

            def count(module: nn.Module, args: tuple, output: Tensor, name: str = name) -> None:
                layer_macs[name] = layer_macs.get(name, 0) + _layer_macs(module, output)
                inputs, outputs = layer_elements.get(name, (0, 0))
                layer_elements[name] = (inputs + args[0].numel(), outputs + output.numel())

            handles.append(module.register_forward_hook(count))
    with probing(model, handles), torch.no_grad():
        model(sample)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    return Complexity(parameters, time_steps, layer_macs, layer_elements)
