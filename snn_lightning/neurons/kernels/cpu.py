"""The C++/OpenMP LIF kernel (``lif_cpu.cpp``): compiled once into a cache directory, called through ctypes.

:func:`snn_lightning.native.load_library` builds and caches the library. The two entry points
are registered as ``torch.library`` custom ops (``snn_lightning::lif_forward_cpu`` and
``lif_backward_cpu``), so ``torch.compile`` treats them as opaque calls. Without a working
compiler :func:`load` returns False after one warning and the fused backend runs its PyTorch loop.
"""

import ctypes
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from snn_lightning.native import OPENMP_FLAGS, load_library

__all__ = ["load"]

_SOURCE = Path(__file__).with_name("lif_cpu.cpp")
# No FMA contraction: every step rounds as the reference loop does, so spikes match it bit for bit.
_FLAGS = (*OPENMP_FLAGS, "-ffp-contract=off")
# libmvec (glibc) vectorises the sigmoid surrogate's exp; without it the kernel still builds, with scalar exp.
_LINK_VARIANTS = [["-lmvec"], ["-DSNN_NO_LIBMVEC"]]
_ELEMENTS_PER_THREAD = 1 << 20
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}


class _Params(ctypes.Structure):
    """Mirror of ``struct Params`` in ``lif_cpu.cpp``."""

    _fields_ = [
        ("T", ctypes.c_int64),
        ("N", ctypes.c_int64),
        ("channels", ctypes.c_int64),
        ("inner", ctypes.c_int64),
        ("v_threshold", ctypes.c_double),
        ("v_rest", ctypes.c_double),
        ("v_reset", ctypes.c_double),
        ("hard_reset", ctypes.c_int),
        ("detach_reset", ctypes.c_int),
        ("threads", ctypes.c_int),
        ("surrogate", ctypes.c_int),
        ("surrogate_param", ctypes.c_double),
    ]


@cache
def _library() -> ctypes.CDLL | None:
    lib = load_library(
        _SOURCE,
        _FLAGS,
        "the fused CPU LIF kernel",
        "the fused backend falls back to its PyTorch loop, which saves the same memory but runs slower",
        _LINK_VARIANTS,
    )
    if lib is not None:
        lib.lif_forward.argtypes = [ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 4 + [_Params]
        lib.lif_backward.argtypes = [ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 6 + [_Params]
    return lib


def load() -> bool:
    """Return whether the compiled kernel is available, building it on first call."""
    return _library() is not None


def _params(
    x: Tensor,
    channels: int,
    inner: int,
    v_threshold: float,
    v_reset: float,
    hard_reset: bool,
    detach_reset: bool = False,
    surrogate: int = 0,
    surrogate_param: float = 0.0,
) -> _Params:
    # A parallel region costs more than small inputs take (and stalls when another process holds a core).
    threads = max(1, min(torch.get_num_threads(), x.numel() // _ELEMENTS_PER_THREAD))
    return _Params(
        x.shape[0],
        x.shape[1],
        channels,
        inner,
        v_threshold,
        v_reset if hard_reset else 0.0,
        v_reset,
        int(hard_reset),
        int(detach_reset),
        threads,
        surrogate,
        surrogate_param,
    )


def _pointer(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


@torch.library.custom_op("snn_lightning::lif_forward_cpu", mutates_args=(), device_types="cpu")
def lif_forward_cpu(
    x: Tensor,
    leak: Tensor,
    channels: int,
    inner: int,
    v_threshold: float,
    v_reset: float,
    hard_reset: bool,
    decay_input: bool,
) -> tuple[Tensor, Tensor]:
    """Return spikes ``[T, N]`` and the pre-spike membrane ``H`` for currents ``x [T, N]`` (contiguous)."""
    spikes = torch.empty_like(x)
    h_seq = torch.empty(x.shape, dtype=leak.dtype)
    params = _params(x, channels, inner, v_threshold, v_reset, hard_reset)
    _library().lif_forward(
        _DTYPE_CODES[x.dtype],
        int(decay_input),
        x.data_ptr(),
        spikes.data_ptr(),
        h_seq.data_ptr(),
        leak.data_ptr(),
        params,
    )
    return spikes, h_seq


@lif_forward_cpu.register_fake
def _(x, leak, channels, inner, v_threshold, v_reset, hard_reset, decay_input):
    return torch.empty_like(x), x.new_empty(x.shape, dtype=leak.dtype)


@torch.library.custom_op("snn_lightning::lif_backward_cpu", mutates_args=(), device_types="cpu")
def lif_backward_cpu(
    grad_spikes: Tensor,
    h_seq: Tensor,
    leak: Tensor,
    table: Tensor | None,
    channels: int,
    inner: int,
    v_threshold: float,
    v_reset: float,
    hard_reset: bool,
    decay_input: bool,
    detach_reset: bool,
    surrogate_kind: int,
    surrogate_parameter: float,
    leak_grad: bool,
) -> tuple[Tensor, Tensor]:
    """Return ``dL/dX [T, N]`` and the per-neuron leak gradient ``[N]`` (empty unless ``leak_grad``)."""
    grad_x = torch.empty_like(grad_spikes)
    leak_partial = h_seq.new_empty(h_seq.shape[1] if leak_grad else 0)
    params = _params(
        h_seq, channels, inner, v_threshold, v_reset, hard_reset, detach_reset, surrogate_kind, surrogate_parameter
    )
    _library().lif_backward(
        _DTYPE_CODES[grad_spikes.dtype],
        int(decay_input),
        grad_spikes.data_ptr(),
        h_seq.data_ptr(),
        _pointer(table),
        grad_x.data_ptr(),
        leak_partial.data_ptr() if leak_grad else None,
        leak.data_ptr(),
        params,
    )
    return grad_x, leak_partial


@lif_backward_cpu.register_fake
def _(
    grad_spikes,
    h_seq,
    leak,
    table,
    channels,
    inner,
    v_threshold,
    v_reset,
    hard_reset,
    decay_input,
    detach_reset,
    surrogate_kind,
    surrogate_parameter,
    leak_grad,
):
    return torch.empty_like(grad_spikes), h_seq.new_empty(h_seq.shape[1] if leak_grad else 0)
