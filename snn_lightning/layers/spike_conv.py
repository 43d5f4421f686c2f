"""Spike-driven convolution: on the CPU, forward and weight gradient cost in proportion to the nonzero inputs.

A convolution after a spiking neuron sees binary, mostly-zero input (a few percent to a few tens
of percent of ones). A dense convolution multiplies every zero; :class:`SpikeConv2d` lists the
nonzeros once per call (``spike_conv_cpu.cpp``) and adds each one's weight rows to the outputs it
reaches, and in backward adds each one's output gradients to its weight rows. The input gradient
(dense output gradient times the weight) stays a dense transposed convolution. Saved for backward
are the listed nonzeros (8 bytes each, plus one offset per pixel) instead of the input (4 bytes
per element).

The result equals ``nn.Conv2d``'s up to the order of the floating-point sums. The module falls
back to ``nn.Conv2d`` when the sparse path does not apply or does not pay: dense input (images,
analog currents), CUDA, dtypes other than float32, autocast, ``torch.compile`` tracing, or a
missing C++ compiler.
"""

import ctypes
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from snn_lightning.native import OPENMP_FLAGS, load_library

__all__ = ["DEFAULT_MAX_DENSITY", "SpikeConv2d", "spike_conv2d"]

# Training (forward + backward) breaks even with nn.Conv2d between 10 % and 20 % nonzero inputs on 1 and 2
# threads (benchmarks/spike_conv.py, README); evaluation alone up to about 25 %.
DEFAULT_MAX_DENSITY = 0.15

_SOURCE = Path(__file__).with_name("spike_conv_cpu.cpp")


class _Shape(ctypes.Structure):
    """Mirror of ``struct Shape`` in ``spike_conv_cpu.cpp``."""

    _fields_ = [
        (name, ctypes.c_int64)
        for name in ("N", "C_in", "H", "W", "C_out", "OH", "OW", "KH", "KW", "stride_h", "stride_w", "pad_h", "pad_w")
    ] + [("threads", ctypes.c_int)]


@cache
def _library() -> ctypes.CDLL | None:
    lib = load_library(_SOURCE, OPENMP_FLAGS, "the spike-driven CPU convolution", "SpikeConv2d runs as nn.Conv2d")
    if lib is not None:
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        lib.spike_conv_count.argtypes = [pointer, size, size, pointer, ctypes.c_int]
        lib.spike_conv_gather.argtypes = [pointer, size, size, pointer, pointer, pointer, ctypes.c_int]
        lib.spike_conv_forward.argtypes = [pointer] * 6 + [_Shape]
        lib.spike_conv_grad_weight.argtypes = [pointer] * 5 + [_Shape]
    return lib


def _shape(
    input_size: Sequence[int], weight_size: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> _Shape:
    n, c_in, h, w = input_size
    c_out, _, kh, kw = weight_size
    oh, ow = (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1
    return _Shape(n, c_in, h, w, c_out, oh, ow, kh, kw, *stride, *padding, torch.get_num_threads())


@torch.library.custom_op("snn_lightning::spike_count_cpu", mutates_args=(), device_types="cpu")
def _count(x: Tensor) -> Tensor:
    """Return the offsets ``[N*H*W + 1]`` of every pixel's nonzeros in the channels-last list of ``x [N, C, H, W]``."""
    pixels_last = x.permute(0, 2, 3, 1).contiguous()
    pixels = pixels_last.shape[0] * pixels_last.shape[1] * pixels_last.shape[2]
    counts = torch.zeros(pixels + 1, dtype=torch.int64)
    _library().spike_conv_count(
        pixels_last.data_ptr(), pixels, x.shape[1], counts[1:].data_ptr(), torch.get_num_threads()
    )
    return counts.cumsum_(0)


@_count.register_fake
def _(x):
    return x.new_empty(x.shape[0] * x.shape[2] * x.shape[3] + 1, dtype=torch.int64)


@torch.library.custom_op("snn_lightning::spike_conv2d_cpu", mutates_args=(), device_types="cpu")
def _forward(
    x: Tensor, offsets: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int], padding: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Return the output ``[N, OH, OW, C_out]`` and the nonzeros of ``x`` listed at ``offsets``: channels, values."""
    lib, shape = _library(), _shape(x.shape, weight.shape, stride, padding)
    pixels_last = x.permute(0, 2, 3, 1).contiguous()
    nonzeros = int(offsets[-1])
    channel = torch.empty(nonzeros, dtype=torch.int32)
    value = torch.empty(nonzeros, dtype=torch.float32)
    lib.spike_conv_gather(
        pixels_last.data_ptr(),
        shape.N * shape.H * shape.W,
        shape.C_in,
        offsets.data_ptr(),
        channel.data_ptr(),
        value.data_ptr(),
        shape.threads,
    )
    taps = weight.detach().permute(2, 3, 1, 0).contiguous()  # [KH, KW, C_in, C_out]: one row per (tap, input channel)
    out = torch.empty(shape.N, shape.OH, shape.OW, shape.C_out)
    bias_pointer = None if bias is None else bias.detach().contiguous().data_ptr()
    lib.spike_conv_forward(
        offsets.data_ptr(), channel.data_ptr(), value.data_ptr(), taps.data_ptr(), bias_pointer, out.data_ptr(), shape
    )
    return out, channel, value


@_forward.register_fake
def _(x, offsets, weight, bias, stride, padding):
    shape = _shape(x.shape, weight.shape, stride, padding)
    nonzeros = torch.library.get_ctx().new_dynamic_size()
    return (
        x.new_empty(shape.N, shape.OH, shape.OW, shape.C_out),
        x.new_empty(nonzeros, dtype=torch.int32),
        x.new_empty(nonzeros),
    )


@torch.library.custom_op("snn_lightning::spike_conv2d_grad_weight_cpu", mutates_args=(), device_types="cpu")
def _grad_weight(
    offsets: Tensor,
    channel: Tensor,
    value: Tensor,
    grad_out: Tensor,
    input_size: Sequence[int],
    weight_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
) -> Tensor:
    """Return ``dL/dW`` as ``[KH, KW, C_in, C_out]`` from the input's nonzeros and ``dL/dY [N, C_out, OH, OW]``."""
    shape = _shape(input_size, weight_size, stride, padding)
    grad_pixels_last = grad_out.permute(0, 2, 3, 1).contiguous()
    grad_taps = torch.empty(shape.KH, shape.KW, shape.C_in, shape.C_out)
    _library().spike_conv_grad_weight(
        offsets.data_ptr(),
        channel.data_ptr(),
        value.data_ptr(),
        grad_pixels_last.data_ptr(),
        grad_taps.data_ptr(),
        shape,
    )
    return grad_taps


@_grad_weight.register_fake
def _(offsets, channel, value, grad_out, input_size, weight_size, stride, padding):
    c_out, c_in, kh, kw = weight_size
    return grad_out.new_empty(kh, kw, c_in, c_out)


class _SpikeConv2dFunction(torch.autograd.Function):
    """Convolution from the input's nonzeros; backward: weight gradient from them, input gradient dense."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        offsets: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> Tensor:
        out, channel, value = torch.ops.snn_lightning.spike_conv2d_cpu(x, offsets, weight, bias, stride, padding)
        ctx.save_for_backward(offsets, channel, value, weight)
        ctx.geometry = (tuple(x.shape), stride, padding)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        offsets, channel, value, weight = ctx.saved_tensors
        input_size, stride, padding = ctx.geometry
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # Only the input's shape and layout are read: an unwritten buffer costs no memory traffic (an
            # expanded scalar would be copied out in full); channels-last makes oneDNN return a channels-last gradient.
            shape_only = torch.empty(input_size, dtype=grad_out.dtype, memory_format=torch.channels_last)
            grad_x = torch.ops.aten.convolution_backward(
                grad_out,
                shape_only,
                weight.contiguous(memory_format=torch.channels_last),
                None,
                stride,
                padding,
                (1, 1),
                False,
                (0, 0),
                1,
                (True, False, False),
            )[0]
        if ctx.needs_input_grad[2]:
            grad_taps = torch.ops.snn_lightning.spike_conv2d_grad_weight_cpu(
                offsets, channel, value, grad_out, input_size, tuple(weight.shape), stride, padding
            )
            grad_weight = grad_taps.permute(3, 2, 0, 1)
        if ctx.needs_input_grad[3]:
            grad_bias = grad_out.sum(dim=(0, 2, 3))
        return grad_x, None, grad_weight, grad_bias, None, None


def spike_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    offsets: Tensor | None = None,
) -> Tensor:
    """Return ``F.conv2d(x, weight, bias, stride, padding)`` computed from the nonzeros of ``x`` (CPU, float32), channels-last.

    ``offsets`` (from a previous count of the same ``x``) saves counting its nonzeros again.
    """
    if _library() is None:
        raise RuntimeError("spike_conv2d needs the compiled CPU kernel, which could not be built (see the warning)")
    if x.device.type != "cpu" or x.dim() != 4 or not x.dtype == weight.dtype == torch.float32:
        raise ValueError(
            f"spike_conv2d takes float32 CPU input [N, C, H, W] and weight, got input {tuple(x.shape)} {x.dtype} on "
            f"{x.device.type} and weight {weight.dtype}; use SpikeConv2d, which runs nn.Conv2d for other inputs"
        )
    if offsets is None:
        offsets = torch.ops.snn_lightning.spike_count_cpu(x.detach())
    return _SpikeConv2dFunction.apply(x, offsets, weight, bias, tuple(stride), tuple(padding))


class SpikeConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes from the nonzero inputs when they are few (spikes on the CPU); dense otherwise.

    Same parameters, state dict and results (up to float rounding) as ``nn.Conv2d``; dilation 1,
    one group, zero padding. Each call counts the input's nonzeros and takes the sparse path when
    their fraction is at most ``max_density``, the input is float32 on the CPU and neither
    autocast nor ``torch.compile`` is active; its output is then channels-last.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        max_density: float = DEFAULT_MAX_DENSITY,
    ) -> None:
        """
        Args:
            in_channels: channels of the input.
            out_channels: channels of the output.
            kernel_size: height and width of the kernel.
            stride: step of the kernel over the input.
            padding: zeros added on each side of the input.
            bias: add a learnable bias to the output.
            max_density: largest fraction of nonzero inputs that takes the sparse path (training breaks even near 0.15, benchmarks/spike_conv.py).
        """
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.max_density = max_density

    @property
    def max_density(self) -> float:
        """Largest fraction of nonzero inputs that takes the sparse path; 0 runs dense on any nonzero input."""
        return self._max_density

    @max_density.setter
    def max_density(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"SpikeConv2d max_density must lie in [0, 1], got {value}")
        self._max_density = float(value)

    def sparse_offsets(self, x: Tensor) -> Tensor | None:
        """Return the offsets of the nonzeros of ``x`` when a call on it takes the sparse path, else None."""
        applicable = (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.dtype == self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
            and x.numel() > 0
            and all(size + 2 * pad >= kernel for size, pad, kernel in zip(x.shape[2:], self.padding, self.kernel_size))
            and _library() is not None
        )
        if not applicable:
            return None
        offsets = torch.ops.snn_lightning.spike_count_cpu(x.detach())
        return offsets if offsets[-1].item() <= self.max_density * x.numel() else None

    def forward(self, x: Tensor) -> Tensor:
        """Return the convolution of ``x [N, C_in, H, W]``."""
        offsets = self.sparse_offsets(x)
        if offsets is None:
            return super().forward(x)
        return spike_conv2d(x, self.weight, self.bias, self.stride, self.padding, offsets)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", max_density={self.max_density}"
