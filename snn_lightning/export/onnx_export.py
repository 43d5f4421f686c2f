"""ONNX export of a trained network: the reference backend traced by torch.export, with a dynamic batch dimension.

The fused and Triton LIF kernels and the spike-driven convolution are custom operators ONNX does
not know; their reference forms (a loop over T, a dense convolution) compute the same outputs,
so the exported graph gives the trained network's logits (tested against onnxruntime).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from snn_lightning.layers import SpikeConv2d

__all__ = ["to_onnx", "with_reference_operators"]


def with_reference_operators(network: nn.Module) -> nn.Module:
    """Return an evaluation-mode copy of ``network`` whose neurons run the reference loop and convolutions run dense."""
    reference = copy.deepcopy(network).eval()
    for module in reference.modules():
        if hasattr(module, "backend"):
            module.backend = "reference"
        if isinstance(module, SpikeConv2d):
            module.max_density = 0.0
    return reference


def to_onnx(network: nn.Module, input_shape: tuple[int, ...], output: Path, frames: int | None = None) -> None:
    """Write ``network`` to ``output`` as an ONNX model with input ``images`` and output ``logits`` ``[T, batch, classes]``.

    Args:
        network: the trained network (images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]`` to logits ``[T, B, classes]``).
        input_shape: ``(channels, height, width)`` of one image or frame.
        output: the ``.onnx`` file to write.
        frames: the number of event frames T when the network takes frames; None: it takes images.
    """
    reference = with_reference_operators(network)
    batch_axis = 0 if frames is None else 1
    example = torch.zeros((2, *input_shape) if frames is None else (frames, 2, *input_shape))
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        reference,
        (example,),
        str(output),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({batch_axis: batch},),
        dynamo=True,
        verbose=False,
    )
