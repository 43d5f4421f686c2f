"""CIFAR-10 and CIFAR-100 on disk: their python pickle batches read safely, their files listed, and their download."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from ..errors import DatasetNotFoundError
from .static_datasets import STATIC_DATASETS

__all__ = ["CIFAR_SOURCES", "cifar_files", "cifar_not_found", "download_cifar", "missing_cifar_files", "read_cifar"]

# torchvision's classes give the folder name, the URL, the archive md5 and the batch file names.
CIFAR_SOURCES = {"cifar10": CIFAR10, "cifar100": CIFAR100}

# The globals a CIFAR batch needs: numpy arrays (numpy 1 and 2 module names, pickle protocols 2 to 5)
# and the bytes helper Python 3 writes at protocol 2. Any other global could run code while loading.
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}
_CIFAR_ROW = 3 * 32 * 32


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that builds dicts, lists, strings and numpy arrays only, and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        """Return the global ``module.name`` if a CIFAR batch may hold it; raise UnpicklingError otherwise."""
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"it names the Python object {module}.{name}, which a CIFAR batch never holds, so nothing in it was run"
            )
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of one CIFAR batch file, or raise DatasetNotFoundError naming it."""
    damaged = f"delete {path.parent} and run again with data.init_args.download: true to download it afresh"
    with open(path, "rb") as file:
        try:
            batch = _CifarUnpickler(file, encoding="latin1").load()
        # Damaged bytes fail in many ways (UnpicklingError, EOFError, UnicodeDecodeError, MemoryError, ...).
        except Exception as error:
            reason = " ".join(str(error).split()) or type(error).__name__  # one line, even for MemoryError()
            raise DatasetNotFoundError(f"{path} is not a CIFAR batch ({reason}); {damaged}") from error
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get("labels", batch.get("fine_labels")) if isinstance(batch, dict) else None
    if (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _CIFAR_ROW
        and isinstance(labels, list)
        and len(labels) == len(data)
        and all(isinstance(label, int) for label in labels)
    ):
        return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
    raise DatasetNotFoundError(
        f"{path} is not a CIFAR batch (expected a dict of uint8 'data' rows of {_CIFAR_ROW} values and as many "
        f"integer 'labels' or 'fine_labels'); {damaged}"
    )


# torchvision's CIFAR10/CIFAR100 refuse any file whose md5 differs from the official one
# (`_check_integrity` in 0.29 hashes every batch on each construction), so files written by
# tests, or re-packed copies, cannot be loaded through them. We read the same pickle format
# ourselves, with an unpickler that refuses anything but arrays, and use torchvision only for
# the URL, archive md5 and file names.
def read_cifar(folder: str | os.PathLike[str], files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` from CIFAR pickle batches: uint8 ``[N, 3, 32, 32]`` and int64 ``[N]``.

    Each file is a pickled dict with ``data`` (uint8 rows of 3072 = R, G, B planes of 32x32) and
    ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100), as in the official python archives.
    A file that is truncated, holds anything else, or names any Python object but numpy's array
    builders raises DatasetNotFoundError naming it; nothing in the file is run.
    """
    batches = [_read_cifar_batch(Path(folder) / name) for name in files]
    return np.concatenate([images for images, _ in batches]), np.concatenate([labels for _, labels in batches])


def cifar_files(dataset: str, train: bool) -> list[str]:
    """Return the batch file names of one CIFAR split."""
    file_list = CIFAR_SOURCES[dataset].train_list if train else CIFAR_SOURCES[dataset].test_list
    return [name for name, _ in file_list]


def missing_cifar_files(root: Path, dataset: str) -> list[str]:
    """Return the batch files of ``dataset`` absent under ``root``."""
    folder = root / CIFAR_SOURCES[dataset].base_folder
    names = cifar_files(dataset, train=True) + cifar_files(dataset, train=False)
    return [name for name in names if not (folder / name).is_file()]


def cifar_not_found(root: Path, dataset: str, missing: list[str]) -> DatasetNotFoundError:
    """Return the error for a CIFAR folder lacking ``missing`` files."""
    title, source = STATIC_DATASETS[dataset].title, CIFAR_SOURCES[dataset]
    folder = root / source.base_folder
    return DatasetNotFoundError(
        f"{title} not found: {folder} lacks {', '.join(missing)}; set data.init_args.download: true, "
        f"or place {source.base_folder}/ (extracted from {source.url}) under {root}"
    )


def download_cifar(root: Path, dataset: str) -> None:
    """Download and extract ``dataset`` into ``root``, leaving nothing behind if that fails."""
    title, source = STATIC_DATASETS[dataset].title, CIFAR_SOURCES[dataset]
    folder = root / source.base_folder
    if folder.exists():
        raise DatasetNotFoundError(
            f"{title} folder {folder} is incomplete (lacks {', '.join(missing_cifar_files(root, dataset))}); "
            f"delete it and run again with data.init_args.download: true"
        )
    root.mkdir(parents=True, exist_ok=True)
    # Download and extract into a scratch folder beside the target, then move the finished
    # folder in one rename, so an interrupted download never looks like a dataset.
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        try:
            download_and_extract_archive(source.url, scratch, filename=source.filename, md5=source.tgz_md5)
        except (OSError, RuntimeError) as error:
            raise DatasetNotFoundError(
                f"could not download {title} from {source.url} into {root} ({error}); "
                f"place {source.base_folder}/ under {root} by hand, e.g. copied from a machine with internet access"
            ) from error
        os.replace(Path(scratch) / source.base_folder, folder)
