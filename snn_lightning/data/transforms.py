"""Image transforms of the static datasets: Cutout, and the train and evaluation pipelines per dataset."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from .static_datasets import FOLDER_DATASETS, STATIC_DATASETS, AugmentPolicy, StaticDataset, normalization

__all__ = ["DEFAULT_CROP_PADDING", "Cutout", "cutout", "image_transform"]


def cutout(image: Tensor, size: int, centre: tuple[int, int]) -> Tensor:
    """Return a copy of ``image`` ``[C, H, W]`` with a ``size`` x ``size`` square around ``centre`` (row, col) zeroed.

    The square spans rows ``row - size // 2`` to ``row - size // 2 + size`` (and likewise columns),
    clipped at the image border, so a hole near the edge is smaller (DeVries & Taylor, 2017).
    """
    height, width = image.shape[-2:]
    top, left = centre[0] - size // 2, centre[1] - size // 2
    out = image.clone()
    out[..., max(top, 0) : min(top + size, height), max(left, 0) : min(left + size, width)] = 0
    return out


class Cutout(nn.Module):
    """Cutout (DeVries & Taylor, 2017): zero one square hole whose centre is uniform over the image.

    Applied after normalisation, so the hole holds the dataset mean; the centre is drawn from
    torch's global generator, which Lightning seeds per dataloader worker.
    """

    def __init__(self, size: int) -> None:
        """
        Args:
            size: side of the square hole in pixels.
        """
        super().__init__()
        self.size = size

    def forward(self, image: Tensor) -> Tensor:
        """Return ``image`` ``[C, H, W]`` with one randomly placed square zeroed."""
        height, width = image.shape[-2:]
        row = int(torch.randint(height, ()).item())
        col = int(torch.randint(width, ()).item())
        return cutout(image, self.size, (row, col))

    def extra_repr(self) -> str:
        return f"size={self.size}"


# Shift of the random crop per dataset (pixels of padding), when the data module's crop_padding is None.
DEFAULT_CROP_PADDING = {"digits": 1, "mnist": 2, "fashion_mnist": 2, "cifar10": 4, "cifar100": 4}


def _augmentation(dataset: StaticDataset, image_size: int, crop_padding: int | None = None) -> list[nn.Module]:
    """Return the geometric train augmentation of ``dataset``.

    MNIST and Fashion-MNIST are shifted by up to 2 pixels (a random 28x28 crop of the image padded
    with 2 black pixels, their background): CIFAR's crop-and-pad recipe, which many public
    Fashion-MNIST training scripts copy with padding 4, with a smaller shift because the objects are
    centred and fill most of the frame. Clothes are mirror symmetric, so Fashion-MNIST is also
    flipped; digits are not, so MNIST is not. The PLIF paper (Fang et al., ICCV 2021; its
    code's ``get_transforms``) trains Fashion-MNIST without augmentation, so ``augment: false``
    reproduces that setting, and MNIST with a random affine (30 degrees, 15 % shift, scale 0.85-1.11).
    ``crop_padding`` replaces the dataset's shift (``DEFAULT_CROP_PADDING``); 0 leaves the crop out
    (flips only, where the dataset flips). The random resized crop of ImageNet and image folders ignores it.
    """
    if dataset in FOLDER_DATASETS:
        return [v2.RandomResizedCrop(image_size), v2.RandomHorizontalFlip()]
    side = STATIC_DATASETS[dataset].side
    padding = DEFAULT_CROP_PADDING[dataset] if crop_padding is None else crop_padding
    steps: list[nn.Module] = [v2.RandomCrop(side, padding=padding)] if padding > 0 else []
    # Digits are not mirror symmetric, so the digit datasets are not flipped.
    if dataset not in ("digits", "mnist"):
        steps.append(v2.RandomHorizontalFlip())
    return steps


def _automatic_augmentation(dataset: StaticDataset, policy: AugmentPolicy) -> nn.Module:
    """Return torchvision's ``policy`` at its defaults; AutoAugment with the CIFAR-10 policy for CIFAR, else ImageNet's."""
    if policy == "randaugment":
        return v2.RandAugment()  # 2 random operations per image at magnitude 9 of 31
    if policy == "trivialaugment":
        return v2.TrivialAugmentWide()
    photographs = dataset in FOLDER_DATASETS
    return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET if photographs else v2.AutoAugmentPolicy.CIFAR10)


def image_transform(
    dataset: StaticDataset,
    train: bool,
    augment: bool = True,
    auto_augment: bool = False,
    cutout_size: int = 0,
    image_size: int = 224,
    crop_padding: int | None = None,
    augment_policy: AugmentPolicy = "autoaugment",
    channels: int = 3,
) -> v2.Compose:
    """Return the pipeline from a PIL image or ``[C, H, W]`` tensor to a normalised float32 tensor.

    With ``train=False`` every random step is left out, so evaluation is deterministic; ImageNet
    and image folders are then resized (shorter side) to ``image_size / 0.875`` and centre-cropped
    to ``image_size``. ``auto_augment`` adds ``augment_policy`` (AutoAugment: the CIFAR-10 policy
    for CIFAR, the ImageNet policy for ImageNet and image folders; RandAugment; TrivialAugmentWide)
    after the geometric augmentation. ``channels`` picks an image folder's normalisation.
    """
    steps: list[nn.Module] = [v2.ToImage()]
    if dataset in FOLDER_DATASETS and not (train and augment):
        steps += [v2.Resize(round(image_size / 0.875)), v2.CenterCrop(image_size)]
    if train and augment:
        steps += _augmentation(dataset, image_size, crop_padding)
    if train and auto_augment:
        steps.append(_automatic_augmentation(dataset, augment_policy))
    mean, std = normalization(dataset, channels)
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), v2.ToPureTensor()]
    if train and cutout_size > 0:
        steps.append(Cutout(cutout_size))
    return v2.Compose(steps)
