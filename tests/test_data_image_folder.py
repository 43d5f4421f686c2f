"""Your own images (``dataset: image_folder``) from folders the tests write, ImageNet's class count, the augmentation policies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import REPO
from helpers import ONE_BATCH_FIT, cli_modes, run_main, write_image_folder
from torchvision.transforms import v2

from snn_lightning.cli import SNNLightningCLI
from snn_lightning.data import StaticImageDataModule
from snn_lightning.data.transforms import image_transform
from snn_lightning.errors import ConfigurationError, DatasetNotFoundError

CONFIG = str(REPO / "configs" / "image_folder.yaml")
CLASSES = {"cat": 4, "dog": 4, "eel": 4}
POLICIES = {"autoaugment": v2.AutoAugment, "randaugment": v2.RandAugment, "trivialaugment": v2.TrivialAugmentWide}


def write_splits(root: Path, modes: tuple[str, ...] = ("RGB", "L"), evaluation: str = "val") -> Path:
    """Write 4 training and 2 evaluation images of 40x30 pixels per class of ``CLASSES`` under ``root``; return it."""
    write_image_folder(root / "train", CLASSES, modes=modes)
    write_image_folder(root / evaluation, {name: 2 for name in CLASSES}, sizes=(30, 50), modes=modes)
    return root


def image_folder(root: Path, **settings) -> StaticImageDataModule:
    """Return the image_folder data module of ``root`` (16-pixel images, batches of 4, validation on val/), ``settings`` overriding."""
    defaults = {"dataset": "image_folder", "image_size": 16, "batch_size": 4, "val_fraction": 0, "num_workers": 0}
    return StaticImageDataModule(root=str(root), **{**defaults, **settings})


def test_classes_channels_and_shape_are_read_before_setup(tmp_path: Path) -> None:
    data = image_folder(write_splits(tmp_path), image_size=32)
    assert (data.num_classes, data.in_channels, data.input_shape) == (3, 3, (3, 32, 32))
    assert data.train_set is None and data.val_set is None


def test_batches_hold_every_image_as_the_first_ones_mode(tmp_path: Path) -> None:
    data = image_folder(write_splits(tmp_path))  # the first image is colour, every second one grey
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set)) == (12, 6)
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1, 2}
    images, labels = next(iter(data.val_dataloader()))
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(data.val_set[0][0], data.val_set[0][0])


def test_grey_images_give_one_channel_and_test_may_stand_for_val(tmp_path: Path) -> None:
    data = image_folder(write_splits(tmp_path, modes=("L",), evaluation="test"))
    assert (data.num_classes, data.in_channels, data.input_shape) == (3, 1, (1, 16, 16))
    data.setup("fit")
    images, labels = next(iter(data.val_dataloader()))
    assert images.shape == (4, 1, 16, 16) and labels.tolist() == [0, 0, 1, 1]
    (normalize,) = [step for step in data.val_set.transform.transforms if isinstance(step, v2.Normalize)]
    assert (normalize.mean, normalize.std) == ([0.5], [0.5])


@pytest.mark.parametrize(("modes", "channels"), [(("RGB",), 1), (("L",), 3)])
def test_channels_converts_every_image(tmp_path: Path, modes: tuple[str, ...], channels: int) -> None:
    data = image_folder(write_splits(tmp_path, modes=modes), channels=channels)
    assert data.in_channels == channels and data.input_shape == (channels, 16, 16)
    data.setup("fit")
    images, _ = next(iter(data.train_dataloader()))
    assert images.shape == (4, channels, 16, 16)


def test_differing_class_folders_name_both_folders_and_a_class(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", CLASSES)
    write_image_folder(tmp_path / "val", {"cat": 1, "dog": 1, "fox": 1})
    with pytest.raises(ConfigurationError) as error:
        assert image_folder(tmp_path).num_classes
    assert str(error.value) == (
        f"the class folders differ between {tmp_path / 'train'} (3 classes) and {tmp_path / 'val'} (3 classes), "
        f"e.g. eel, fox; both must hold the same class folders"
    )


@pytest.mark.parametrize("present", ["nothing", "train", "empty class folders"])
def test_a_missing_folder_names_the_layout_and_the_root_setting(tmp_path: Path, present: str) -> None:
    if present == "train":
        write_image_folder(tmp_path / "train", CLASSES)
    elif present == "empty class folders":
        for split in ("train", "val"):
            (tmp_path / split / "cat").mkdir(parents=True)
    missing = {"nothing": "train", "train": "val", "empty class folders": "train"}[present]
    with pytest.raises(DatasetNotFoundError) as error:
        assert image_folder(tmp_path).in_channels
    assert str(error.value) == (
        f"image folder not found: {tmp_path / missing} is not a folder of class folders holding images; lay your "
        f"images out as {tmp_path / 'train'}/<class>/<image> and {tmp_path / 'val'}/<class>/<image> (a test/ folder "
        f"may stand for val/), one folder per class, or set data.init_args.root to the folder holding train/ and val/"
    )


def test_imagenet_refuses_a_folder_of_other_classes(tmp_path: Path) -> None:
    write_splits(tmp_path, modes=("RGB",))
    data = StaticImageDataModule(dataset="imagenet", root=str(tmp_path))
    with pytest.raises(ConfigurationError) as error:
        data.setup("fit")
    assert str(error.value) == (
        f"ImageNet has 1000 classes but {tmp_path / 'train'} holds 3 class folders; "
        f"for your own images set data.init_args.dataset: image_folder"
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"channels": 2}, "data.channels is 2; set it to 1 (grey), 3 (colour) or null"),
        ({"dataset": "cifar10", "channels": 3}, "set data.init_args.channels: null (it is for image_folder only)"),
        ({"channels": 1, "auto_augment": True}, "auto_augment: false for image_folder, or data.init_args.channels: 3"),
        ({"augment_policy": "augmix"}, "data.augment_policy is 'augmix'; expected one of autoaugment, randaugment"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, settings: dict, named: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        image_folder(tmp_path, **settings)


def test_auto_augment_of_grey_images_read_from_the_folder_is_refused(tmp_path: Path) -> None:
    data = image_folder(write_splits(tmp_path, modes=("L",)), auto_augment=True)
    with pytest.raises(ConfigurationError, match=re.escape("set data.init_args.auto_augment: false for image_folder")):
        data.setup("fit")


# ---------------------------------------------------------------- AutoAugment, RandAugment, TrivialAugment


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_augments_training_images_only(tmp_path: Path, policy: str) -> None:
    data = image_folder(write_splits(tmp_path, modes=("RGB",)), auto_augment=True, augment_policy=policy)
    data.setup("fit")
    train_steps, evaluation_steps = data.train_set.transform.transforms, data.val_set.transform.transforms
    assert sum(isinstance(step, POLICIES[policy]) for step in train_steps) == 1
    assert not any(isinstance(step, tuple(POLICIES.values())) for step in evaluation_steps)
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_keeps_cifar_images_32_pixels_float32(policy: str) -> None:
    train = image_transform("cifar10", train=True, auto_augment=True, augment_policy=policy)
    evaluation = image_transform("cifar10", train=False, auto_augment=True, augment_policy=policy)
    assert [type(step) for step in train.transforms].count(POLICIES[policy]) == 1
    assert not any(isinstance(step, tuple(POLICIES.values())) for step in evaluation.transforms)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    for pipeline in (train, evaluation):
        out = pipeline(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_auto_augment_uses_the_imagenet_policy_for_image_folders() -> None:
    steps = image_transform("image_folder", train=True, auto_augment=True).transforms
    (policy,) = [step for step in steps if isinstance(step, v2.AutoAugment)]
    assert policy.policy == v2.AutoAugmentPolicy.IMAGENET


# ---------------------------------------------------------------- the shipped config


def test_the_config_fits_a_folder_with_its_classes_and_channels(in_tmp_dir: Path) -> None:
    folder = write_splits(in_tmp_dir / "my_images", modes=("L",))
    args = ["fit", "--config", CONFIG, "--data.root", str(folder), "--data.num_workers", "0", *ONE_BATCH_FIT]
    cli = SNNLightningCLI(args=[*args, "--trainer.logger", "false"], **cli_modes())
    assert (cli.model.num_classes, cli.model.hparams.in_channels) == (3, 1)
    assert cli.trainer.global_step == 1 and "val/acc" in cli.trainer.callback_metrics


def test_the_config_without_a_folder_prints_the_layout(capsys: pytest.CaptureFixture, in_tmp_dir: Path) -> None:
    code, _, err = run_main(["fit", "--config", CONFIG, "--data.root", str(in_tmp_dir / "none")], capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"image folder not found: {in_tmp_dir / 'none' / 'train'} is not a folder of class folders" in line
