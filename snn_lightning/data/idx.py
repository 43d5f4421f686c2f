"""Reader of the IDX files MNIST and Fashion-MNIST are distributed in, gzipped or unpacked.

An IDX file is a 4-byte big-endian magic ``0x0000 <value type> <number of dims>``, then each
dimension as a big-endian uint32, then the values in row-major order. Only unsigned bytes (value
type 0x08) are read, which both datasets use for images (3 dims, magic 0x00000803) and labels
(1 dim, magic 0x00000801).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["IDX_UINT8", "read_idx"]

IDX_UINT8 = 0x08
_CHUNK = 1 << 20
# Deflate expands at most about 1032-fold, which bounds what a .gz file can hold.
_GZIP_MAX_RATIO = 1032


def _read_into(file: BinaryIO, out: np.ndarray) -> int:
    """Fill the uint8 array ``out`` from ``file`` and return how many bytes there were (fewer where it ends)."""
    # Chunked, because a gzip stream's readinto allocates a temporary as large as the request.
    view = memoryview(out)
    filled = 0
    while filled < len(out):
        read = file.readinto(view[filled : filled + _CHUNK])
        if not read:
            break
        filled += read
    return filled


def read_idx(path: str | os.PathLike[str], dims: int) -> np.ndarray:
    """Return the writable uint8 array ``[d1, ..., d_dims]`` stored in the IDX file ``path`` (``.gz`` is unpacked).

    Raises ValueError naming ``path`` when the magic is not that of unsigned bytes in ``dims``
    dimensions, when the values are fewer or more than the product of the dimensions, or when
    the file cannot be read (a truncated or corrupt gzip stream included).
    """
    path = Path(path)
    expected = IDX_UINT8 << 8 | dims
    packed = path.suffix == ".gz"
    try:
        size = path.stat().st_size
        capacity = size * (_GZIP_MAX_RATIO if packed else 1)
        with (gzip.open if packed else open)(path, "rb") as file:
            header = file.read(4)
            if len(header) < 4 or int.from_bytes(header, "big") != expected:
                found = f"0x{header.hex()}" if len(header) == 4 else f"{len(header)} bytes long"
                raise ValueError(
                    f"{path} is not an IDX file of unsigned bytes in {dims} dims: its magic is {found}, "
                    f"expected 0x{expected:08x}"
                )
            sizes = file.read(4 * dims)
            if len(sizes) < 4 * dims:
                raise ValueError(f"{path} ends inside its IDX header ({4 + len(sizes)} of {4 + 4 * dims} bytes)")
            shape = tuple(int(size) for size in np.frombuffer(sizes, dtype=">u4"))
            if math.prod(shape) > capacity:
                # A damaged header must not make us allocate more than the file could possibly hold.
                raise ValueError(
                    f"{path} has an IDX header ({' x '.join(map(str, shape))}) asking for more values than its "
                    f"{size} bytes can hold"
                )
            values = np.empty(math.prod(shape), dtype=np.uint8)
            filled = _read_into(file, values)
            trailing = len(file.read(1))
    except (OSError, EOFError, zlib.error) as error:
        # gzip.BadGzipFile is an OSError; a stream cut short raises EOFError, damaged data zlib.error.
        raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error})") from error
    if filled < len(values) or trailing:
        held = f"{filled} values" if filled < len(values) else "more values"
        raise ValueError(f"{path} holds {held} but its IDX header ({' x '.join(map(str, shape))}) needs {len(values)}")
    return values.reshape(shape)
