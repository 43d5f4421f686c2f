"""The C++/OpenMP LIF kernel (``lif_cpu.cpp``): compiled once into a cache directory, called through ctypes.

The source uses no torch headers, so it compiles in a few seconds with the system compiler
(``$CXX``, default ``g++``) instead of the minute a ``torch.utils.cpp_extension`` build takes; the
library lands in ``$SNN_LIGHTNING_CACHE`` (default ``~/.cache/snn_lightning``) under a name that
hashes the source, the flags, the compiler and the CPU, so an edit or another machine rebuilds it.
The two entry points are registered as ``torch.library`` custom ops (``snn_lightning::lif_forward_cpu``
and ``lif_backward_cpu``), so ``torch.compile`` treats them as opaque calls. Without a working
compiler :func:`load` returns False after one warning and the fused backend runs its PyTorch loop.
"""

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

__all__ = ["load", "library_path"]

logger = logging.getLogger("snn_lightning")

_SOURCE = Path(__file__).with_name("lif_cpu.cpp")
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC", "-std=c++17"]
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


def _cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "snn_lightning"
    return Path(os.environ.get("SNN_LIGHTNING_CACHE", default))


def _cpu_signature() -> str:
    """Return what identifies this CPU's instruction set (``-march=native`` binaries are not portable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next((line for line in text.splitlines() if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor() + platform.machine()


def library_path(compiler: str) -> Path:
    """Return where the library built by ``compiler`` from the current source for this CPU is cached."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    key = "\n".join([_SOURCE.read_text(), " ".join(_FLAGS), version, _cpu_signature()])
    return _cache_dir() / f"lif_cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def _build(compiler: str, target: Path) -> None:
    """Compile the kernel into ``target`` atomically (a temporary file renamed), so parallel processes agree."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for extra in _LINK_VARIANTS:
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            partial = Path(tmp.name)
        command = [compiler, *_FLAGS, str(_SOURCE), "-o", str(partial), *extra]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(partial, target)
            logger.info("compiled the fused CPU LIF kernel into %s", target)
            return
        partial.unlink(missing_ok=True)
        errors.append(f"$ {' '.join(command)}\n{result.stderr.strip()}")
    raise RuntimeError("\n".join(errors))


@cache
def _library() -> Optional[ctypes.CDLL]:
    compiler = os.environ.get("CXX", "g++")
    try:
        if shutil.which(compiler) is None:
            raise RuntimeError(f"compiler {compiler!r} not found on PATH")
        path = library_path(compiler)
        if not path.exists():
            _build(compiler, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(
            f"could not build the fused CPU LIF kernel ({error}); the fused backend falls back to its "
            f"PyTorch loop, which saves the same memory but runs slower. Install g++ with OpenMP (or set "
            f"CXX to a C++17 compiler) to get the kernel.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
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
        x.shape[0], x.shape[1], channels, inner, v_threshold, v_reset if hard_reset else 0.0, v_reset,
        int(hard_reset), int(detach_reset), threads, surrogate, surrogate_param,
    )


def _pointer(tensor: Optional[Tensor]) -> Optional[int]:
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
    _library().lif_forward(_DTYPE_CODES[x.dtype], int(decay_input), x.data_ptr(), spikes.data_ptr(), h_seq.data_ptr(), leak.data_ptr(), params)
    return spikes, h_seq


@lif_forward_cpu.register_fake
def _(x, leak, channels, inner, v_threshold, v_reset, hard_reset, decay_input):
    return torch.empty_like(x), x.new_empty(x.shape, dtype=leak.dtype)


@torch.library.custom_op("snn_lightning::lif_backward_cpu", mutates_args=(), device_types="cpu")
def lif_backward_cpu(
    grad_spikes: Tensor,
    h_seq: Tensor,
    leak: Tensor,
    table: Optional[Tensor],
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
    params = _params(h_seq, channels, inner, v_threshold, v_reset, hard_reset, detach_reset, surrogate_kind, surrogate_parameter)
    _library().lif_backward(
        _DTYPE_CODES[grad_spikes.dtype], int(decay_input), grad_spikes.data_ptr(), h_seq.data_ptr(), _pointer(table),
        grad_x.data_ptr(), leak_partial.data_ptr() if leak_grad else None, leak.data_ptr(), params,
    )
    return grad_x, leak_partial


@lif_backward_cpu.register_fake
def _(grad_spikes, h_seq, leak, table, channels, inner, v_threshold, v_reset, hard_reset, decay_input, detach_reset,
      surrogate_kind, surrogate_parameter, leak_grad):
    return torch.empty_like(grad_spikes), h_seq.new_empty(h_seq.shape[1] if leak_grad else 0)
