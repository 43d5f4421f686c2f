"""Static image classification data: embedded digits, (Fashion-)MNIST, CIFAR-10/100 and ImageNet as one LightningDataModule."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.datasets import CIFAR10, CIFAR100, MNIST, FashionMNIST, ImageFolder
from torchvision.datasets.folder import find_classes
from torchvision.datasets.utils import download_and_extract_archive, download_url
from torchvision.transforms import v2

from ..errors import ConfigurationError, DatasetNotFoundError
from .digits import load_digits
from .idx import read_idx
from .loaders import SplitDataModule
from .splits import stratified_split
from .transforms import StaticDataset, image_transform

__all__ = ["MixupCutmixCollate", "StaticImageDataModule", "read_cifar"]

_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000}
_CIFAR = {"cifar10": ("CIFAR-10", CIFAR10), "cifar100": ("CIFAR-100", CIFAR100)}
# torchvision's classes give the folder name (root/<name>/raw), the mirrors and the md5 of each file.
_IDX = {"mnist": ("MNIST", MNIST), "fashion_mnist": ("Fashion-MNIST", FashionMNIST)}
_GREY = ("digits", "mnist", "fashion_mnist")
_IDX_SIDE = 28
# Debian's `dataset-fashion-mnist` package installs the four .gz files here.
_DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


class _TensorImages(Dataset):
    """Images ``[N, C, H, W]`` and integer labels held in memory."""

    def __init__(self, images: Tensor, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


class _TransformedSubset(Dataset):
    """The samples ``indices`` of ``source`` with ``transform`` applied to the image.

    Train and validation share one source, each with its own transform, so a held-out
    validation image is never augmented.
    """

    def __init__(self, source: Dataset, indices: np.ndarray, transform: Callable[[Any], Tensor]) -> None:
        self.source = source
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.source[int(self.indices[index])]
        return self.transform(image), label


class MixupCutmixCollate:
    """Batch training samples, then mix the batch by mixup or CutMix; return images and soft targets ``[B, classes]``.

    mixup (Zhang et al., 2018) blends whole images, ``x = λ·x_i + (1−λ)·x_j``; CutMix (Yun et al.,
    2019) pastes a box of ``x_j`` into ``x_i``, with ``λ`` the area kept from ``x_i``. Either way the
    target is ``λ·onehot(y_i) + (1−λ)·onehot(y_j)``, ``λ ~ Beta(α, α)`` drawn once per batch and
    ``j`` the neighbouring sample in the batch (torchvision's ``v2.MixUp`` and ``v2.CutMix``).
    With both alphas above 0 each batch uses one of the two, chosen with probability 1/2 (timm's
    ``switch_prob`` 0.5, as in the DeiT and FSTA-SNN ImageNet recipes). A module-level class, so
    dataloader workers started by spawn can pickle it.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        """
        Args:
            num_classes: number of classes, the width of the soft targets.
            mixup_alpha: α of mixup's Beta(α, α); 0 turns mixup off.
            cutmix_alpha: α of CutMix's Beta(α, α); 0 turns CutMix off.
        """
        mixers: list[v2.Transform] = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if not mixers:
            raise ConfigurationError(
                "MixupCutmixCollate needs mixup_alpha > 0 or cutmix_alpha > 0; "
                "without mixing use PyTorch's default collate"
            )
        self.mix = mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)

    def __call__(self, samples: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
        """Return the mixed images ``[B, C, H, W]`` of ``samples`` and float32 soft targets ``[B, classes]``."""
        images, labels = default_collate(samples)
        return self.mix(images, labels)


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


def _cifar_files(dataset: str, train: bool) -> list[str]:
    """Return the batch file names of one CIFAR split."""
    file_list = _CIFAR[dataset][1].train_list if train else _CIFAR[dataset][1].test_list
    return [name for name, _ in file_list]


def _missing_cifar_files(root: Path, dataset: str) -> list[str]:
    """Return the batch files of ``dataset`` absent under ``root``."""
    folder = root / _CIFAR[dataset][1].base_folder
    names = _cifar_files(dataset, train=True) + _cifar_files(dataset, train=False)
    return [name for name in names if not (folder / name).is_file()]


def _cifar_not_found(root: Path, dataset: str, missing: list[str]) -> DatasetNotFoundError:
    """Return the error for a CIFAR folder lacking ``missing`` files."""
    title, source = _CIFAR[dataset]
    folder = root / source.base_folder
    return DatasetNotFoundError(
        f"{title} not found: {folder} lacks {', '.join(missing)}; set data.init_args.download: true, "
        f"or place {source.base_folder}/ (extracted from {source.url}) under {root}"
    )


def _download_cifar(root: Path, dataset: str) -> None:
    """Download and extract ``dataset`` into ``root``, leaving nothing behind if that fails."""
    title, source = _CIFAR[dataset]
    folder = root / source.base_folder
    if folder.exists():
        raise DatasetNotFoundError(
            f"{title} folder {folder} is incomplete (lacks {', '.join(_missing_cifar_files(root, dataset))}); "
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


def _idx_names(train: bool) -> tuple[str, str]:
    """Return the (images, labels) IDX file names of one split, without ``.gz``."""
    split = "train" if train else "t10k"
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


def _idx_raw_folder(root: Path, dataset: str) -> Path:
    """Return the folder torchvision keeps (and ``download`` puts) the IDX files in: ``root/<class name>/raw``."""
    return root / _IDX[dataset][1].__name__ / "raw"


def _idx_file(folder: Path, name: str) -> Path | None:
    """Return ``folder/name`` or ``folder/name.gz``, whichever exists (unpacked first), or None."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _idx_folder(root: Path, dataset: str) -> tuple[Path, list[str]]:
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
    mirror = _IDX[dataset][1].mirrors[0]
    return (
        f"place the four IDX files (.gz or unpacked, from {mirror}) in {_idx_raw_folder(root, dataset)} "
        f"(torchvision's layout)"
    )


def _idx_fix(root: Path, dataset: str) -> str:
    """Return both ways to get ``dataset``'s IDX files, for the end of an error message."""
    raw = _idx_raw_folder(root, dataset)
    return f"set data.init_args.download: true to download them into {raw}, or {_idx_by_hand(root, dataset)}"


def _read_idx_split(root: Path, dataset: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of one MNIST or Fashion-MNIST split: uint8 ``[N, 28, 28]`` and int64 ``[N]``.

    Raises DatasetNotFoundError naming the file when one is missing, truncated or corrupt, or
    when its contents are not 28x28 images with one label in [0, 10) each.
    """
    title = _IDX[dataset][0]
    folder, missing = _idx_folder(root, dataset)
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
    if images.shape[1:] != (_IDX_SIDE, _IDX_SIDE):
        raise DatasetNotFoundError(
            f"{title} file {images_path} holds {images.shape[1]}x{images.shape[2]} images, expected "
            f"{_IDX_SIDE}x{_IDX_SIDE}; {damaged}"
        )
    if len(labels) != len(images):
        raise DatasetNotFoundError(
            f"{title} file {labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images; "
            f"{damaged}"
        )
    classes = _NUM_CLASSES[dataset]
    if len(labels) and labels.max() >= classes:
        raise DatasetNotFoundError(
            f"{title} file {labels_path} holds label {labels.max()}, expected labels in [0, {classes}); {damaged}"
        )
    return images, labels.astype(np.int64)


def _download_idx(root: Path, dataset: str) -> None:
    """Download the IDX files missing from ``root/<class name>/raw``, leaving nothing behind if that fails."""
    title, source = _IDX[dataset]
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


def _imagenet_folders(root: Path) -> tuple[Path, Path]:
    """Return ``(root/train, root/val)``, or raise if either has no class folder or their classes differ."""
    train, val = root / "train", root / "val"
    for folder in (train, val):
        if not folder.is_dir() or not any(entry.is_dir() for entry in folder.iterdir()):
            raise DatasetNotFoundError(
                f"ImageNet not found: {folder} is not a folder of class folders; ImageNet cannot be "
                f"downloaded automatically: get ILSVRC2012 from https://image-net.org and lay it out as "
                f"{train}/<class>/*.JPEG and {val}/<class>/*.JPEG (validation images sorted into the "
                f"same class folders), or set data.init_args.root to the folder holding train/ and val/"
            )
    # Labels are indices into the sorted folder names, so differing class sets would mislabel silently.
    train_classes, val_classes = set(find_classes(train)[0]), set(find_classes(val)[0])
    if train_classes != val_classes:
        only = sorted(train_classes ^ val_classes)
        raise ConfigurationError(
            f"ImageNet class folders differ between {train} ({len(train_classes)} classes) and {val} "
            f"({len(val_classes)} classes), e.g. {', '.join(only[:3])}; both must hold the same class folders"
        )
    return train, val


class StaticImageDataModule(SplitDataModule):
    """Static image classification: embedded digits, MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 or ImageNet.

    Batches are ``(images [B, C, H, W] float32, labels [B] int64)``; the spiking model repeats
    the images over time (direct encoding). Choose ``digits`` to try things in seconds on a CPU
    (no download, 8x8 grey images), MNIST or Fashion-MNIST (28x28 grey, 60,000 training images,
    read from their IDX files) for small SNN baselines such as the PLIF paper's, CIFAR for the
    papers' main results, ImageNet for scale.
    Validation holds out ``val_fraction`` of the training set; ``val_fraction: 0`` validates
    on the test split instead, which is what the STAA-SNN and TSER-KD papers report.
    With ``mixup_alpha`` or ``cutmix_alpha`` above 0 (ImageNet recipes of DeiT and FSTA-SNN: 0.8
    and 1.0) training batches carry soft targets ``[B, classes]`` float32 instead of labels;
    validation, test and predict batches are never mixed and keep integer labels.
    """

    def __init__(
        self,
        dataset: Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet"] = "digits",
        root: str = "data",
        time_steps: int = 4,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = False,
        val_fraction: float = 0.1,
        augment: bool = True,
        auto_augment: bool = False,
        cutout: int = 0,
        image_size: int = 224,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            dataset: which dataset to load; digits is embedded in the package and needs no download.
            root: folder of the data in torchvision's layout (CIFAR, MNIST/raw, FashionMNIST/raw), or holding the four (Fashion-)MNIST IDX files (e.g. /usr/share/datasets/fashion-mnist); for ImageNet the folder of train/ and val/.
            time_steps: number of time steps the model repeats each image for; recorded here so the CLI links it to the model.
            batch_size: samples per batch (per process under DDP).
            num_workers: dataloader worker processes; 0 loads in the main process.
            pin_memory: pin batches in page-locked memory for faster copies to the GPU.
            download: download CIFAR or (Fashion-)MNIST into root, in torchvision's layout, when files are missing (ImageNet cannot be downloaded).
            val_fraction: fraction of the training set held out (stratified, seeded) for validation; 0 validates on the test split.
            augment: random training augmentation: crop with padding 4 and flip (CIFAR), random resized crop and flip (ImageNet), crop with padding 2 and flip (Fashion-MNIST), 2-pixel shift (MNIST), 1-pixel shift (digits).
            auto_augment: add AutoAugment to training (CIFAR-10 policy for CIFAR, ImageNet policy for ImageNet; not for the grey datasets).
            cutout: side in pixels of the Cutout hole applied to training images; 0 turns Cutout off.
            image_size: side of the ImageNet crop in pixels; ignored by the other datasets.
            mixup_alpha: α of mixup's Beta(α, α) (Zhang et al. 2018) on training batches, which then carry soft targets; 0 turns it off (ImageNet recipes: 0.8).
            cutmix_alpha: α of CutMix's Beta(α, α) (Yun et al. 2019) on training batches; 0 turns it off (ImageNet recipes: 1.0); with mixup too, each batch uses one of the two at random.
            seed: seed of the train/validation split.
        """
        super().__init__()
        if dataset not in get_args(StaticDataset):
            raise ConfigurationError(
                f"data.dataset is {dataset!r}; expected one of {', '.join(get_args(StaticDataset))}"
            )
        for name, value, least in (
            ("time_steps", time_steps, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("cutout", cutout, 0),
            ("image_size", image_size, 1),
        ):
            if value < least:
                linked = " (linked from model.time_steps)" if name == "time_steps" else ""
                raise ConfigurationError(f"data.{name} is {value}{linked}; set it to an integer >= {least}")
        if not 0 <= val_fraction < 1:
            raise ConfigurationError(
                f"data.val_fraction is {val_fraction}; set it in [0, 1) (0 validates on the test split)"
            )
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not value >= 0:
                raise ConfigurationError(
                    f"data.{name} is {value}; set it >= 0 "
                    "(0 turns it off; ImageNet recipes use 0.8 for mixup, 1.0 for CutMix)"
                )
        if auto_augment and dataset in _GREY:
            raise ConfigurationError(
                "data.auto_augment is true but AutoAugment's policies are for colour images; "
                f"set data.init_args.auto_augment: false for {dataset}"
            )
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = root
        self.time_steps = time_steps
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.download = download
        self.val_fraction = val_fraction
        self.augment = augment
        self.auto_augment = auto_augment
        self.cutout = cutout
        self.image_size = image_size
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes of the chosen dataset (known without reading it)."""
        return _NUM_CLASSES[self.dataset]

    @property
    def in_channels(self) -> int:
        """Number of image channels: 1 for digits, MNIST and Fashion-MNIST, 3 for the colour datasets."""
        return 1 if self.dataset in _GREY else 3

    def _root(self) -> Path:
        """Return ``root`` as an absolute path, so error messages name exactly where data was looked for.

        Raises ConfigurationError when ``root`` is a file or lies inside one, which no download can fix.
        """
        root = Path(self.root).expanduser().absolute()
        existing = next(path for path in (root, *root.parents) if path.exists())
        if not existing.is_dir():
            where = "is a file" if existing == root else f"lies inside {existing}, a file"
            raise ConfigurationError(
                f"data.root {root} {where}, not a folder; set data.init_args.root to the folder holding "
                f"the dataset (download: true creates a missing one)"
            )
        return root

    def prepare_data(self) -> None:
        """Download CIFAR or (Fashion-)MNIST into ``root`` when ``download`` is on and files are missing (runs on one process)."""
        if not self.download:
            return
        if self.dataset in _CIFAR and _missing_cifar_files(self._root(), self.dataset):
            _download_cifar(self._root(), self.dataset)
        if self.dataset in _IDX and _idx_folder(self._root(), self.dataset)[1]:
            _download_idx(self._root(), self.dataset)

    def _source(self, train: bool) -> tuple[Dataset, np.ndarray]:
        """Return the untransformed train or test split and its labels."""
        if self.dataset == "digits":
            images, labels = load_digits("train" if train else "test")
            return _TensorImages(torch.from_numpy(images), labels), labels
        root = self._root()
        if self.dataset == "imagenet":
            train_folder, val_folder = _imagenet_folders(root)
            path = train_folder if train else val_folder
            try:
                folder = ImageFolder(path)
            except FileNotFoundError as error:
                raise DatasetNotFoundError(
                    f"ImageNet folder {path} is incomplete ({error}); every class folder needs at least one image"
                ) from error
            return folder, np.asarray(folder.targets, dtype=np.int64)
        if self.dataset in _IDX:
            images, labels = _read_idx_split(root, self.dataset, train)
            # One uint8 copy in memory ([N, 1, 28, 28] views the array); transforms scale per sample.
            return _TensorImages(torch.from_numpy(images).unsqueeze(1), labels), labels
        missing = _missing_cifar_files(root, self.dataset)
        if missing:
            raise _cifar_not_found(root, self.dataset, missing)
        folder = root / _CIFAR[self.dataset][1].base_folder
        images, labels = read_cifar(folder, _cifar_files(self.dataset, train))
        return _TensorImages(torch.from_numpy(images), labels), labels

    def _transform(self, train: bool) -> Callable[[Any], Tensor]:
        """Return the train (augmented) or evaluation (deterministic) image pipeline."""
        return image_transform(self.dataset, train, self.augment, self.auto_augment, self.cutout, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        """Build the splits that ``stage`` needs (fit, validate, test or predict; None builds all)."""
        needs_test = stage in (None, "test", "predict") or self.val_fraction == 0
        if needs_test and self.test_set is None:
            source, labels = self._source(train=False)
            self.test_set = _TransformedSubset(source, np.arange(len(labels)), self._transform(train=False))
        if stage in (None, "fit", "validate") and self.val_set is None:
            source, labels = self._source(train=True)
            train_indices, val_indices = stratified_split(labels, self.val_fraction, self.seed)
            self.train_set = _TransformedSubset(source, train_indices, self._transform(train=True))
            if self.val_fraction == 0:
                self.val_set = self.test_set
            else:
                self.val_set = _TransformedSubset(source, val_indices, self._transform(train=False))

    def train_dataloader(self) -> DataLoader:
        """Return the shuffled, augmented training batches, mixed by mixup or CutMix when either alpha is above 0."""
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            return super().train_dataloader()
        # The collate must reach the DataLoader's constructor: Lightning rebuilds loaders from their
        # constructor arguments (e.g. to add a DistributedSampler under DDP).
        collate = MixupCutmixCollate(self.num_classes, self.mixup_alpha, self.cutmix_alpha)
        return self._loader(self.train_set, shuffle=True, collate_fn=collate)
