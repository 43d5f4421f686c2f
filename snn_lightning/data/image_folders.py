"""Images sorted into one folder per class, ``root/train/<class>/*`` and ``root/val/<class>/*``: ImageNet and your own."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from PIL import Image, ImageMode
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, has_file_allowed_extension

from ..errors import ConfigurationError, DatasetNotFoundError
from .static_datasets import STATIC_DATASETS, StaticDataset

__all__ = ["folder_channels", "folder_classes", "read_image", "read_split"]


def _not_found(dataset: StaticDataset, folder: Path, train: Path, evaluation: Path) -> DatasetNotFoundError:
    """Return the error naming ``folder``, the layout ``dataset`` expects and the root setting."""
    if dataset == "imagenet":
        return DatasetNotFoundError(
            f"ImageNet not found: {folder} is not a folder of class folders; ImageNet cannot be "
            f"downloaded automatically: get ILSVRC2012 from https://image-net.org and lay it out as "
            f"{train}/<class>/*.JPEG and {evaluation}/<class>/*.JPEG (validation images sorted into the "
            f"same class folders), or set data.init_args.root to the folder holding train/ and val/"
        )
    return DatasetNotFoundError(
        f"image folder not found: {folder} is not a folder of class folders holding images; lay your images out "
        f"as {train}/<class>/<image> and {evaluation}/<class>/<image> (a test/ folder may stand for val/), one "
        f"folder per class, or set data.init_args.root to the folder holding train/ and val/"
    )


def _split_folders(root: Path, dataset: StaticDataset) -> tuple[Path, Path]:
    """Return ``(root/train, root/val)`` (an image folder without val/ evaluates on test/), or raise if either has no class folder."""
    train, evaluation = root / "train", root / "val"
    if dataset == "image_folder" and not evaluation.is_dir() and (root / "test").is_dir():
        evaluation = root / "test"
    for folder in (train, evaluation):
        if not folder.is_dir() or not any(entry.is_dir() for entry in folder.iterdir()):
            raise _not_found(dataset, folder, train, evaluation)
    return train, evaluation


def folder_classes(root: Path, dataset: StaticDataset) -> list[str]:
    """Return the sorted class folder names of ``root``'s splits; raise if the splits differ or ImageNet's count is not 1000."""
    train, evaluation = _split_folders(root, dataset)
    # Labels are indices into the sorted folder names, so differing class sets would mislabel silently.
    train_classes, evaluation_classes = find_classes(train)[0], find_classes(evaluation)[0]
    if set(train_classes) != set(evaluation_classes):
        only = sorted(set(train_classes) ^ set(evaluation_classes))
        raise ConfigurationError(
            f"the class folders differ between {train} ({len(train_classes)} classes) and {evaluation} "
            f"({len(evaluation_classes)} classes), e.g. {', '.join(only[:3])}; both must hold the same class folders"
        )
    expected = STATIC_DATASETS[dataset].num_classes
    if expected is not None and len(train_classes) != expected:
        raise ConfigurationError(
            f"{STATIC_DATASETS[dataset].title} has {expected} classes but {train} holds {len(train_classes)} "
            f"class folders; for your own images set data.init_args.dataset: image_folder"
        )
    return train_classes


def _first_image(folder: Path) -> Path | None:
    """Return the first image (in sorted order) inside ``folder``'s class folders, or None when they hold none."""
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        subfolders.sort()
        images = sorted(name for name in files if has_file_allowed_extension(name, IMG_EXTENSIONS))
        if images and Path(directory) != folder:  # ImageFolder ignores files beside the class folders
            return Path(directory, images[0])
    return None


def folder_channels(root: Path, dataset: StaticDataset) -> int:
    """Return the channels of ``root``'s first training image: 1 for grey (PIL base mode L: modes 1, L, LA, I, F), else 3."""
    train, evaluation = _split_folders(root, dataset)
    path = _first_image(train)
    if path is None:
        raise _not_found(dataset, train, train, evaluation)
    try:
        with Image.open(path) as image:
            return 1 if ImageMode.getmode(image.mode).basemode == "L" else 3
    except OSError as error:  # PIL's UnidentifiedImageError too
        raise DatasetNotFoundError(
            f"{path} cannot be read as an image ({error}); replace it or move it out of {train}"
        ) from error


def read_image(path: str, mode: str) -> Image.Image:
    """Return the image at ``path`` converted to PIL ``mode`` (L: grey, RGB: colour)."""
    with open(path, "rb") as file:
        return Image.open(file).convert(mode)


def read_split(root: Path, dataset: StaticDataset, train: bool, channels: int) -> ImageFolder:
    """Return the training or evaluation split of ``root`` as ``channels``-channel PIL images labelled by sorted class folder."""
    folder_classes(root, dataset)
    folder = _split_folders(root, dataset)[0 if train else 1]
    # A partial of a module-level function, so dataloader workers started by spawn can pickle the loader.
    loader = partial(read_image, mode="L" if channels == 1 else "RGB")
    try:
        return ImageFolder(folder, loader=loader)
    except FileNotFoundError as error:
        raise DatasetNotFoundError(
            f"{folder} is incomplete ({error}); every class folder needs at least one image"
        ) from error
