"""MNIST and Fashion-MNIST on disk: their four IDX files found in torchvision's or Debian's layout, read and checked, and their download."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.utils import download_url

from ..errors import DatasetNotFoundError
from .idx import read_idx
from .static_datasets import STATIC_DATASETS

__all__ = ["IDX_SOURCES", "download_idx", "idx_folder", "read_idx_split"]

# torchvision's classes give the folder name (root/<name>/raw), the mirrors and the md5 of each file.
IDX_SOURCES = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
# Debian's `dataset-fashion-mnist` package installs the four .gz files here.
_DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _idx_names(train: bool) -> tuple[str, str]:
    """Return the (images, labels) IDX file names of one split, without ``.gz``."""
    split = "train" if train else "t10k"
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


def _idx_raw_folder(root: Path, dataset: str) -> Path:
    """Return the folder torchvision keeps (and ``download`` puts) the IDX files in: ``root/<class name>/raw``."""
    return root / IDX_SOURCES[dataset].__name__ / "raw"


def _idx_file(folder: Path, name: str) -> Path | None:
    """Return ``folder/name`` or ``folder/name.gz``, whichever exists (unpacked first), or None."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def idx_folder(root: Path, dataset: str) -> tuple[Path, list[str]]:
    """Return the folder to read ``dataset``'s IDX files from and the file names it lacks (none: complete).

    Looks in torchvision's layout ``root/<class name>/raw``, then in ``root`` itself (the layout of
    Debian's package), and takes the first holding all four files, so labels never come from
    another copy than their images. When neither does, returns the one holding more (torchvision's on a tie).
    """
    names = (*_idx_names(train=True), *_idx_names(train=False))
    candidates = []
    for folder in (_idx_raw_folder(root, dataset), root):
        missing = [name for name in names if _idx_file(folder, name) is None]
        if not missing:
            return folder, []
        candidates.append((len(missing), folder, missing))
    _, folder, missing = min(candidates, key=lambda candidate: candidate[0])
    return folder, missing


def _idx_by_hand(root: Path, dataset: str) -> str:
    """Return how to get ``dataset``'s IDX files without ``download``, for the end of an error message."""
    if dataset == "fashion_mnist":
        return f"apt-get install dataset-fashion-mnist and set data.init_args.root: {_DEBIAN_FASHION_MNIST}"
    mirror = IDX_SOURCES[dataset].mirrors[0]
    return (
        f"place the four IDX files (.gz or unpacked, from {mirror}) in {_idx_raw_folder(root, dataset)} "
        f"(torchvision's layout)"
    )


def _idx_fix(root: Path, dataset: str) -> str:
    """Return both ways to get ``dataset``'s IDX files, for the end of an error message."""
    raw = _idx_raw_folder(root, dataset)
    return f"set data.init_args.download: true to download them into {raw}, or {_idx_by_hand(root, dataset)}"


def read_idx_split(root: Path, dataset: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of one MNIST or Fashion-MNIST split: uint8 ``[N, 28, 28]`` and int64 ``[N]``.

    Raises DatasetNotFoundError naming the file when one is missing, truncated or corrupt, or
    when its contents are not 28x28 images with one label in [0, 10) each.
    """
    title = STATIC_DATASETS[dataset].title
    folder, missing = idx_folder(root, dataset)
    if missing:
        paths = ", ".join(str(folder / f"{name}.gz") for name in missing)
        raise DatasetNotFoundError(
            f"{title} not found: {paths} missing (an unpacked file without .gz serves too; looked in "
            f"{_idx_raw_folder(root, dataset)} and {root}); {_idx_fix(root, dataset)}"
        )
    images_path, labels_path = (_idx_file(folder, name) for name in _idx_names(train))
    damaged = f"delete it and {_idx_fix(root, dataset)}"
    try:
        images = read_idx(images_path, dims=3)
        labels = read_idx(labels_path, dims=1)
    except ValueError as error:
        raise DatasetNotFoundError(f"{title} file is damaged: {error}; {damaged}") from error
    side = STATIC_DATASETS[dataset].side
    if images.shape[1:] != (side, side):
        raise DatasetNotFoundError(
            f"{title} file {images_path} holds {images.shape[1]}x{images.shape[2]} images, expected "
            f"{side}x{side}; {damaged}"
        )
    if len(labels) != len(images):
        raise DatasetNotFoundError(
            f"{title} file {labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images; "
            f"{damaged}"
        )
    classes = STATIC_DATASETS[dataset].num_classes
    if len(labels) and labels.max() >= classes:
        raise DatasetNotFoundError(
            f"{title} file {labels_path} holds label {labels.max()}, expected labels in [0, {classes}); {damaged}"
        )
    return images, labels.astype(np.int64)


def download_idx(root: Path, dataset: str) -> None:
    """Download the IDX files missing from ``root/<class name>/raw``, leaving nothing behind if that fails."""
    title, source = STATIC_DATASETS[dataset].title, IDX_SOURCES[dataset]
    raw = _idx_raw_folder(root, dataset)
    wanted = [(name, md5) for name, md5 in source.resources if _idx_file(raw, name.removesuffix(".gz")) is None]
    root.mkdir(parents=True, exist_ok=True)
    # Download into a scratch folder beside the target, then move the finished files in by
    # renames, so an interrupted download never looks like a dataset file.
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        for name, md5 in wanted:
            failures = []
            for mirror in source.mirrors:
                try:
                    download_url(f"{mirror}{name}", scratch, filename=name, md5=md5)
                    break
                except (OSError, RuntimeError) as error:
                    failures.append(f"{mirror}{name} ({error})")
            else:
                raise DatasetNotFoundError(
                    f"could not download {title} from {' or '.join(failures)}; {_idx_by_hand(root, dataset)}, "
                    f"or copy {raw} from a machine with internet access"
                )
        raw.mkdir(parents=True, exist_ok=True)
        for name, _ in wanted:
            os.replace(Path(scratch) / name, raw / name)
