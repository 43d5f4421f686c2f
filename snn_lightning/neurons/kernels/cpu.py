"""The C++/OpenMP LIF kernel (``lif_cpu.cpp``): compiled once into a cache directory, called through ctypes.

:func:`snn_lightning.native.load_library` builds and caches the library. The two entry points
are registered as ``torch.library`` custom ops (``snn_lightning::lif_forward_cpu`` and
``lif_backward_cpu``, see :func:`.ops.register_lif_ops`), so ``torch.compile`` treats them as
opaque calls. Without a working compiler :func:`implementation` returns None after one warning and
the fused backend runs its PyTorch loop.
"""

import ctypes
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from snn_lightning.native import OPENMP_FLAGS, load_library
from snn_lightning.neurons.kernels.ops import Implementation, KernelSettings, register_lif_ops

__all__ = ["implementation"]

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


def _params(x: Tensor, settings: KernelSettings) -> _Params:
    # A parallel region costs more than small inputs take (and stalls when another process holds a core).
    threads = max(1, min(torch.get_num_threads(), x.numel() // _ELEMENTS_PER_THREAD))
    return _Params(
        x.shape[0],
        x.shape[1],
        settings.channels,
        settings.inner,
        settings.v_threshold,
        settings.v_rest,
        settings.v_reset,
        int(settings.hard_reset),
        int(settings.detach_reset),
        threads,
        settings.surrogate_kind,
        settings.surrogate_parameter,
    )


def _pointer(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _forward(x: Tensor, leak: Tensor, settings: KernelSettings) -> tuple[Tensor, Tensor]:
    """Return spikes ``[T, N]`` and the pre-spike membrane ``H`` for currents ``x [T, N]`` (contiguous)."""
    spikes = torch.empty_like(x)
    h_seq = torch.empty(x.shape, dtype=leak.dtype)
    _library().lif_forward(
        _DTYPE_CODES[x.dtype],
        int(settings.decay_input),
        x.data_ptr(),
        spikes.data_ptr(),
        h_seq.data_ptr(),
        leak.data_ptr(),
        _params(x, settings),
    )
    return spikes, h_seq


def _backward(
    grad_spikes: Tensor, h_seq: Tensor, leak: Tensor, table: Tensor | None, settings: KernelSettings, leak_grad: bool
) -> tuple[Tensor, Tensor]:
    """Return ``dL/dX [T, N]`` and the per-neuron leak gradient ``[N]`` (empty unless ``leak_grad``)."""
    grad_x = torch.empty_like(grad_spikes)
    leak_partial = h_seq.new_empty(h_seq.shape[1] if leak_grad else 0)
    _library().lif_backward(
        _DTYPE_CODES[grad_spikes.dtype],
        int(settings.decay_input),
        grad_spikes.data_ptr(),
        h_seq.data_ptr(),
        _pointer(table),
        grad_x.data_ptr(),
        leak_partial.data_ptr() if leak_grad else None,
        leak.data_ptr(),
        _params(h_seq, settings),
    )
    return grad_x, leak_partial


@cache
def implementation() -> Implementation | None:
    """Return the compiled kernel registered as ops, building it on first call; None without a working compiler."""
    if _library() is None:
        return None
    return register_lif_ops("cpu", _forward, _backward, device_types="cpu")
