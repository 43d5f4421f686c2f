"""Compile a C++ source of the package once into a cached shared library and load it with ctypes.

The kernels use no torch headers, so they compile in a few seconds with the system compiler
(``$CXX``, default ``g++``) instead of the minute a ``torch.utils.cpp_extension`` build takes. A
library lands in ``$SNN_LIGHTNING_CACHE`` (default ``~/.cache/snn_lightning``) under a name that
hashes the source, the flags, the compiler and the CPU, so an edit or another machine rebuilds it;
it is written to a temporary file and renamed, so parallel processes agree.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["OPENMP_FLAGS", "library_path", "load_library"]

logger = logging.getLogger("snn_lightning")

# Optimised for this CPU (the cache key includes its instruction set), OpenMP, position-independent.
OPENMP_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC", "-std=c++17")


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


def library_path(source: Path, flags: Sequence[str], compiler: str) -> Path:
    """Return where the library built by ``compiler`` from ``source`` with ``flags`` for this CPU is cached."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    key = "\n".join([source.read_text(), " ".join(flags), version, _cpu_signature()])
    return _cache_dir() / f"{source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def _build(
    compiler: str, source: Path, flags: Sequence[str], link_variants: Sequence[Sequence[str]], target: Path
) -> None:
    """Compile ``source`` into ``target`` with the first link variant that works; raise with every error otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for extra in link_variants:
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            partial = Path(tmp.name)
        command = [compiler, *flags, str(source), "-o", str(partial), *extra]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(partial, target)
            logger.info("compiled %s into %s", source.name, target)
            return
        partial.unlink(missing_ok=True)
        errors.append(f"$ {' '.join(command)}\n{result.stderr.strip()}")
    raise RuntimeError("\n".join(errors))


def load_library(
    source: Path,
    flags: Sequence[str],
    what: str,
    fallback: str,
    link_variants: Sequence[Sequence[str]] = ((),),
) -> ctypes.CDLL | None:
    """Return ``source`` compiled and loaded, building it on first use; None after one warning when that fails.

    Args:
        source: the C++ file.
        flags: compiler flags (:data:`OPENMP_FLAGS` plus any the source needs).
        what: the kernel, for the warning ("the fused CPU LIF kernel").
        fallback: what runs instead, for the warning ("the fused backend falls back to its PyTorch loop").
        link_variants: extra arguments tried in turn until one links (optional libraries first).
    """
    compiler = os.environ.get("CXX", "g++")
    try:
        if shutil.which(compiler) is None:
            raise RuntimeError(f"compiler {compiler!r} not found on PATH")
        path = library_path(source, flags, compiler)
        if not path.exists():
            _build(compiler, source, flags, link_variants, path)
        return ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(
            f"could not build {what} ({error}); {fallback}. Install g++ with OpenMP (or set CXX to a C++17 "
            f"compiler) to get the kernel.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
