"""Image transforms of the static datasets: Cutout, and the train and evaluation pipelines per dataset."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from .digits import DIGITS_MEAN, DIGITS_STD

__all__ = ["NORMALIZATION", "Cutout", "cutout", "image_transform"]

StaticDataset = Literal["digits", "cifar10", "cifar100", "imagenet"]

# Per-channel (mean, std) of each training set. CIFAR stds are the true per-pixel stds
# (not the (0.2023, 0.1994, 0.2010) some repositories copy); ImageNet's are torchvision's.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": (DIGITS_MEAN, DIGITS_STD),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


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


def _augmentation(dataset: StaticDataset, image_size: int) -> list[nn.Module]:
    """Return the geometric train augmentation of ``dataset``."""
    if dataset == "digits":
        # Shift by at most one pixel; digits are not mirror symmetric, so no flip.
        return [v2.RandomCrop(8, padding=1)]
    if dataset == "imagenet":
        return [v2.RandomResizedCrop(image_size), v2.RandomHorizontalFlip()]
    return [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]


def image_transform(
    dataset: StaticDataset,
    train: bool,
    augment: bool = True,
    auto_augment: bool = False,
    cutout_size: int = 0,
    image_size: int = 224,
) -> v2.Compose:
    """Return the pipeline from a PIL image or ``[C, H, W]`` tensor to a normalised float32 tensor.

    With ``train=False`` every random step is left out, so evaluation is deterministic;
    ImageNet is then resized to ``image_size / 0.875`` and centre-cropped to ``image_size``.
    AutoAugment uses the CIFAR-10 policy for CIFAR and the ImageNet policy for ImageNet.
    """
    steps: list[nn.Module] = [v2.ToImage()]
    if dataset == "imagenet" and not (train and augment):
        steps += [v2.Resize(round(image_size / 0.875)), v2.CenterCrop(image_size)]
    if train and augment:
        steps += _augmentation(dataset, image_size)
    if train and auto_augment:
        policy = v2.AutoAugmentPolicy.IMAGENET if dataset == "imagenet" else v2.AutoAugmentPolicy.CIFAR10
        steps.append(v2.AutoAugment(policy))
    mean, std = NORMALIZATION[dataset]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), v2.ToPureTensor()]
    if train and cutout_size > 0:
        steps.append(Cutout(cutout_size))
    return v2.Compose(steps)
