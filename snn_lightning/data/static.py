"""Static image classification data: embedded digits, (Fashion-)MNIST, CIFAR-10/100, ImageNet and your own image folders as one LightningDataModule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from ..errors import ConfigurationError
from .cifar import CIFAR_SOURCES, cifar_files, cifar_not_found, download_cifar, missing_cifar_files, read_cifar
from .digits import load_digits
from .image_folders import folder_channels, folder_classes, read_split
from .mnist import IDX_SOURCES, download_idx, idx_folder, read_idx_split
from .split_module import SplitDataModule, TransformedSubset, check_at_least, check_split_settings
from .static_datasets import FOLDER_DATASETS, STATIC_DATASETS, AugmentPolicy, StaticDataset
from .transforms import image_transform

__all__ = ["MixupCutmixCollate", "StaticImageDataModule"]


class _TensorImages(Dataset):
    """Images ``[N, C, H, W]`` and integer labels held in memory."""

    def __init__(self, images: Tensor, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


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


def _check_choice(name: str, value: str, choices: Any) -> None:
    """Raise ConfigurationError naming ``data.<name>`` when ``value`` is not one of the ``Literal`` ``choices``."""
    if value not in get_args(choices):
        raise ConfigurationError(f"data.{name} is {value!r}; expected one of {', '.join(get_args(choices))}")


def _check_channels(dataset: StaticDataset, channels: int | None) -> None:
    """Raise ConfigurationError when ``channels`` is set for a dataset other than image_folder, or is not 1 or 3."""
    if channels is None:
        return
    if dataset != "image_folder":
        raise ConfigurationError(
            f"data.channels is {channels} but {dataset} has {STATIC_DATASETS[dataset].channels}-channel images; "
            f"set data.init_args.channels: null (it is for image_folder only)"
        )
    if channels not in (1, 3):
        raise ConfigurationError(
            f"data.channels is {channels}; set it to 1 (grey), 3 (colour) or null (read from the first training image)"
        )


def _check_auto_augment(dataset: StaticDataset, auto_augment: bool, channels: int | None) -> None:
    """Raise ConfigurationError when ``auto_augment`` is on for grey images (``channels`` 1; None: not known yet)."""
    if auto_augment and channels == 1:
        colour = (
            ", or data.init_args.channels: 3 to read its grey images as colour" if dataset == "image_folder" else ""
        )
        raise ConfigurationError(
            "data.auto_augment is true but the augmentation policies are for colour images; "
            f"set data.init_args.auto_augment: false for {dataset}{colour}"
        )


class StaticImageDataModule(SplitDataModule):
    """Static image classification: embedded digits, MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, ImageNet or your own images.

    Batches are ``(images [B, C, H, W] float32, labels [B] int64)``; the spiking model repeats
    the images over time (direct encoding). Choose ``digits`` to try things in seconds on a CPU
    (no download, 8x8 grey images), MNIST or Fashion-MNIST (28x28 grey, 60,000 training images,
    read from their IDX files) for small SNN baselines such as the PLIF paper's, CIFAR for the
    papers' main results, ImageNet for scale, ``image_folder`` for your own images sorted into
    ``root/train/<class>/*`` and ``root/val/<class>/*`` (or ``root/test/``): its classes are the
    sorted folder names and its channels those of the first training image (1 for grey, 3 for
    colour; every image is converted to that mode), both read without loading the images.
    Validation holds out ``val_fraction`` of the training set; ``val_fraction: 0`` validates
    on the test split instead, which is what the STAA-SNN and TSER-KD papers report.
    With ``mixup_alpha`` or ``cutmix_alpha`` above 0 (ImageNet recipes of DeiT and FSTA-SNN: 0.8
    and 1.0) training batches carry soft targets ``[B, classes]`` float32 instead of labels;
    validation, test and predict batches are never mixed and keep integer labels.

    >>> data = StaticImageDataModule(dataset="digits", batch_size=32, val_fraction=0.1)
    >>> data.num_classes, data.input_shape  # known before any data is read
    (10, (1, 8, 8))
    >>> data.setup("fit")
    >>> len(data.train_set), len(data.val_set)  # 10 % of the 1,438 training digits held out
    (1295, 143)
    >>> images, labels = next(iter(data.train_dataloader()))
    >>> tuple(images.shape), tuple(labels.shape)
    ((32, 1, 8, 8), (32,))
    """

    def __init__(
        self,
        dataset: StaticDataset = "digits",
        root: str = "data",
        batch_size: int = 128,
        num_workers: int | None = None,
        pin_memory: bool = False,
        download: bool = False,
        val_fraction: float = 0.1,
        augment: bool = True,
        crop_padding: int | None = None,
        auto_augment: bool = False,
        augment_policy: AugmentPolicy = "autoaugment",
        cutout: int = 0,
        image_size: int = 224,
        channels: int | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            dataset: which dataset to load; digits is embedded in the package and needs no download; image_folder reads your own images from root/train/<class>/* and root/val/<class>/*.
            root: folder of the data in torchvision's layout (CIFAR, MNIST/raw, FashionMNIST/raw), or holding the four (Fashion-)MNIST IDX files (e.g. /usr/share/datasets/fashion-mnist); for ImageNet and image_folder the folder of train/ and val/ (image_folder: or test/), each holding one folder of images per class.
            batch_size: samples per batch (per process under DDP).
            num_workers: dataloader worker processes; 0 loads in the main process; null: 0 for the embedded digits (already in memory), else the CPU cores this process may use, divided by the training processes on the machine, less one, from 1 to 8.
            pin_memory: pin batches in page-locked memory for faster copies to the GPU.
            download: download CIFAR or (Fashion-)MNIST into root, in torchvision's layout, when files are missing (ImageNet and image folders cannot be downloaded).
            val_fraction: fraction of the training set held out (stratified, seeded) for validation; 0 validates on the test split.
            augment: random training augmentation: crop with padding 4 and flip (CIFAR), random resized crop and flip (ImageNet, image_folder), crop with padding 2 and flip (Fashion-MNIST), 2-pixel shift (MNIST), 1-pixel shift (digits).
            crop_padding: shift of the random training crop in pixels; null: the dataset's (4 CIFAR, 2 (Fashion-)MNIST, 1 digits); 0: no crop (Fashion-MNIST then only flips). ImageNet and image_folder ignore it.
            auto_augment: add augment_policy to training (colour images only: not for the grey datasets or grey image folders).
            augment_policy: the policy auto_augment adds, at torchvision's defaults: autoaugment (AutoAugment; CIFAR-10 policy for CIFAR, ImageNet policy for ImageNet and image_folder), randaugment (RandAugment: 2 random operations per image at magnitude 9 of 31) or trivialaugment (TrivialAugmentWide: 1 random operation per image at a random magnitude); ignored when auto_augment is false.
            cutout: side in pixels of the Cutout hole applied to training images; 0 turns Cutout off.
            image_size: side of the ImageNet and image_folder images in pixels (training: random resized crop; evaluation: shorter side resized to image_size / 0.875, centre crop); ignored by the other datasets.
            channels: image_folder's channels, every image converted to them: 1 (grey, normalised with mean 0.5 and std 0.5) or 3 (colour, ImageNet's mean and std); null: 1 if the first training image is grey, else 3. Only for image_folder.
            mixup_alpha: α of mixup's Beta(α, α) (Zhang et al. 2018) on training batches, which then carry soft targets; 0 turns it off (ImageNet recipes: 0.8).
            cutmix_alpha: α of CutMix's Beta(α, α) (Yun et al. 2019) on training batches; 0 turns it off (ImageNet recipes: 1.0); with mixup too, each batch uses one of the two at random.
            seed: seed of the train/validation split.
        """
        super().__init__()
        _check_choice("dataset", dataset, StaticDataset)
        _check_choice("augment_policy", augment_policy, AugmentPolicy)
        check_split_settings(batch_size, num_workers, val_fraction)
        check_at_least("cutout", cutout, 0)
        if crop_padding is not None:
            check_at_least("crop_padding", crop_padding, 0)
        check_at_least("image_size", image_size, 1)
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not value >= 0:
                raise ConfigurationError(
                    f"data.{name} is {value}; set it >= 0 "
                    "(0 turns it off; ImageNet recipes use 0.8 for mixup, 1.0 for CutMix)"
                )
        _check_channels(dataset, channels)
        _check_auto_augment(dataset, auto_augment, channels or STATIC_DATASETS[dataset].channels)
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = root
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.download = download
        self.val_fraction = val_fraction
        self.augment = augment
        self.crop_padding = crop_padding
        self.auto_augment = auto_augment
        self.augment_policy = augment_policy
        self.cutout = cutout
        self.image_size = image_size
        self.channels = channels
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.seed = seed

    @property
    def num_classes(self) -> int:
        """Number of classes of the chosen dataset (known without reading it; image_folder lists its class folders)."""
        known = STATIC_DATASETS[self.dataset].num_classes
        return known if known is not None else len(folder_classes(self._root(), self.dataset))

    @property
    def in_channels(self) -> int:
        """Number of image channels: 1 for digits, MNIST and Fashion-MNIST, 3 for the colour datasets; image_folder's ``channels`` or its first image's."""
        known = self.channels or STATIC_DATASETS[self.dataset].channels
        return known if known is not None else folder_channels(self._root(), self.dataset)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Return ``(channels, height, width)`` of one image: the dataset's side, or ``image_size`` (ImageNet, image_folder)."""
        side = STATIC_DATASETS[self.dataset].side or self.image_size
        return self.in_channels, side, side

    @property
    def workers(self) -> int:
        """Return the dataloader worker processes: ``num_workers``; when None, 0 for in-memory digits, else the CPU-based default."""
        if self.num_workers is None and STATIC_DATASETS[self.dataset].in_memory:
            return 0
        return super().workers

    def prepare_data(self) -> None:
        """Download CIFAR or (Fashion-)MNIST into ``root`` when ``download`` is on and files are missing (runs on one process)."""
        if not self.download:
            return
        if self.dataset in CIFAR_SOURCES and missing_cifar_files(self._root(), self.dataset):
            download_cifar(self._root(), self.dataset)
        if self.dataset in IDX_SOURCES and idx_folder(self._root(), self.dataset)[1]:
            download_idx(self._root(), self.dataset)

    def _source(self, train: bool) -> tuple[Dataset, np.ndarray]:
        """Return the untransformed train or test split and its labels."""
        if self.dataset == "digits":
            images, labels = load_digits("train" if train else "test")
            return _TensorImages(torch.from_numpy(images), labels), labels
        root = self._root()
        if self.dataset in FOLDER_DATASETS:
            folder = read_split(root, self.dataset, train, self.in_channels)
            return folder, np.asarray(folder.targets, dtype=np.int64)
        if self.dataset in IDX_SOURCES:
            images, labels = read_idx_split(root, self.dataset, train)
            # One uint8 copy in memory ([N, 1, 28, 28] views the array); transforms scale per sample.
            return _TensorImages(torch.from_numpy(images).unsqueeze(1), labels), labels
        missing = missing_cifar_files(root, self.dataset)
        if missing:
            raise cifar_not_found(root, self.dataset, missing)
        folder = root / CIFAR_SOURCES[self.dataset].base_folder
        images, labels = read_cifar(folder, cifar_files(self.dataset, train))
        return _TensorImages(torch.from_numpy(images), labels), labels

    def _transform(self, train: bool) -> Callable[[Any], Tensor]:
        """Return the train (augmented) or evaluation (deterministic) image pipeline."""
        channels = self.in_channels
        _check_auto_augment(self.dataset, self.auto_augment, channels)
        return image_transform(
            self.dataset,
            train,
            self.augment,
            self.auto_augment,
            self.cutout,
            self.image_size,
            self.crop_padding,
            self.augment_policy,
            channels,
        )

    def _test_split(self) -> Dataset:
        """Return the test split, with the evaluation pipeline."""
        source, labels = self._source(train=False)
        return TransformedSubset(source, np.arange(len(labels)), self._transform(train=False))

    def _train_split(self) -> tuple[Dataset, Dataset]:
        """Return the augmented training split and the validation split held out of the training set."""
        source, labels = self._source(train=True)
        kept, held = self._hold_out(labels)
        return (
            TransformedSubset(source, kept, self._transform(train=True)),
            TransformedSubset(source, held, self._transform(train=False)),
        )

    def train_dataloader(self) -> DataLoader:
        """Return the shuffled, augmented training batches, mixed by mixup or CutMix when either alpha is above 0."""
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            return super().train_dataloader()
        # The collate must reach the DataLoader's constructor: Lightning rebuilds loaders from their
        # constructor arguments (e.g. to add a DistributedSampler under DDP).
        collate = MixupCutmixCollate(self.num_classes, self.mixup_alpha, self.cutmix_alpha)
        return self._loader(self.train_set, shuffle=True, collate_fn=collate)
