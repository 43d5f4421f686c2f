"""Compile a C++ source of the package once into a cached shared library and load it with ctypes.

The kernels use no torch headers, so they compile in a few seconds with the system compiler
(``$CXX``, default ``g++``) instead of the minute a ``torch.utils.cpp_extension`` build takes. A
library lands in ``$SNN_LIGHTNING_CACHE`` (default ``~/.cache/snn_lightning``) under a name that
hashes the source, the flags, the compiler and the CPU, so an edit or another machine rebuilds it;
it is written to a temporary file and renamed, so parallel processes agree. Beside it a small JSON
file records its size and sha256; a library that does not match its record (truncated by a full
disk or a killed copy, which would crash the process with a bus error when loaded) is rebuilt
instead of loaded.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
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


def _record_path(library: Path) -> Path:
    """Return the JSON file beside ``library`` that records its size and sha256."""
    return library.with_suffix(".json")


def _fingerprint(data: bytes) -> dict[str, int | str]:
    """Return the size and sha256 of a library's bytes, as its record stores them."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# Not a sign of damage: an older version of this module built the library, or its build was cut short.
_UNRECORDED = "no readable record of its size and sha256 beside it"


def _mismatch(library: Path) -> str | None:
    """Return why the cached ``library`` may not be loaded, or None when it matches the record written at build time."""
    try:
        record = json.loads(_record_path(library).read_text())
    except (OSError, ValueError):
        return _UNRECORDED
    if not isinstance(record, dict):
        return _UNRECORDED
    found = _fingerprint(library.read_bytes())
    if record != found:
        return (
            f"it has {found['size']} bytes and sha256 {found['sha256'][:12]}, but was built with "
            f"{record.get('size')} bytes and sha256 {str(record.get('sha256'))[:12]} (a truncated or overwritten file)"
        )
    return None


class _UnusableCache(RuntimeError):
    """A cached library failed its check and could not be rebuilt in its place."""


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in its folder, so readers see the old or the new file."""
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=target.suffix, delete=False) as tmp:
        tmp.write(data)
    try:
        os.chmod(tmp.name, 0o644)  # readable by whoever may load the library (temporary files are private)
        os.replace(tmp.name, target)
    finally:
        Path(tmp.name).unlink(missing_ok=True)


def _build(
    compiler: str, source: Path, flags: Sequence[str], link_variants: Sequence[Sequence[str]], target: Path
) -> None:
    """Compile ``source`` into ``target`` with the first link variant that works and record its size and sha256.

    Raise with every compiler error when no variant links.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for extra in link_variants:
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            partial = Path(tmp.name)
        command = [compiler, *flags, str(source), "-o", str(partial), *extra]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode == 0:
                # The record first: a library is never in place without the record it is checked against.
                _write_atomically(_record_path(target), json.dumps(_fingerprint(partial.read_bytes())).encode())
                os.replace(partial, target)
                logger.info("compiled %s into %s", source.name, target)
                return
        finally:
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
        # Never load a library unchecked: a truncated one kills the process with a bus error and no message.
        problem = _mismatch(path) if path.exists() else None
        if problem is not None:
            (logger.info if problem is _UNRECORDED else logger.warning)("rebuilding %s: %s", path, problem)
        if problem is not None or not path.exists():
            try:
                _build(compiler, source, flags, link_variants, path)
            except (OSError, RuntimeError) as error:
                if problem is None:
                    raise
                raise _UnusableCache(
                    f"the cached library {path} cannot be trusted ({problem}) and rebuilding it failed ({error}); "
                    f"delete {path} and {_record_path(path).name} beside it"
                ) from error
        return ctypes.CDLL(str(path))
    except _UnusableCache as error:
        warnings.warn(f"{error}; until then {fallback}.", RuntimeWarning, stacklevel=3)
        return None
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(
            f"could not build {what} ({error}); {fallback}. Install g++ with OpenMP (or set CXX to a C++17 "
            f"compiler) to get the kernel.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
