"""Static image data: embedded digits, CIFAR and ImageNet from files the tests write, transforms."""

from __future__ import annotations

import hashlib
import pickle
import re
import urllib.error
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from snn_lightning.data import Cutout, StaticImageDataModule, cutout, load_digits
from snn_lightning.data import static
from snn_lightning.data.digits import DIGITS_FILE, DIGITS_MEAN, DIGITS_SHA256, DIGITS_STD
from snn_lightning.data.splits import stratified_split
from snn_lightning.data.transforms import NORMALIZATION
from snn_lightning.errors import ConfigurationError, DatasetNotFoundError


def write_cifar(root: Path, dataset: str, per_file: int) -> dict[str, np.ndarray]:
    """Write CIFAR batches in the official pickle format; each image has one constant value per channel."""
    rng = np.random.default_rng(0)
    if dataset == "cifar10":
        folder, label_key, classes = "cifar-10-batches-py", "labels", 10
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = ("batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_file})
    else:
        folder, files, label_key, classes = "cifar-100-python", ["train", "test"], "fine_labels", 100
        meta = ("meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": ["c"] * 20})
    (root / folder).mkdir(parents=True)
    colours = {}
    for name in files:
        colour = rng.integers(0, 256, size=(per_file, 3), dtype=np.uint8)
        planes = np.repeat(colour, 1024, axis=1)  # R plane, G plane, B plane, 1024 values each
        labels = [int(i % classes) for i in range(per_file)]
        filenames = [f"{i}.png" for i in range(per_file)]
        batch = {"batch_label": name, label_key: labels, "data": planes, "filenames": filenames}
        if dataset == "cifar100":
            batch["coarse_labels"] = [label // 5 for label in labels]
        with open(root / folder / name, "wb") as file:
            pickle.dump(batch, file, protocol=2)
        colours[name] = colour
    with open(root / folder / meta[0], "wb") as file:
        pickle.dump(meta[1], file, protocol=2)
    return colours


def write_image_folder(root: Path, classes: dict[str, int], sizes: tuple[int, int] = (40, 30)) -> None:
    """Write ``count`` random RGB images (alternately PNG and JPEG) into ``root/<class>/``."""
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(sizes[1], sizes[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / (f"{i}.png" if i % 2 else f"{i}.JPEG"))


# ---------------------------------------------------------------- embedded digits


def test_digits_file_matches_provenance() -> None:
    provenance = (DIGITS_FILE.parent / "PROVENANCE.md").read_text()
    recorded = re.search(r"sha256\*\*: `([0-9a-f]{64})`", provenance).group(1)
    actual = hashlib.sha256(DIGITS_FILE.read_bytes()).hexdigest()
    assert actual == recorded == DIGITS_SHA256


def test_digits_split_is_a_fixed_stratified_partition() -> None:
    train_images, train_labels = load_digits("train")
    test_images, test_labels = load_digits("test")
    assert train_images.shape == (1438, 1, 8, 8) and test_images.shape == (359, 1, 8, 8)
    assert train_images.dtype == np.float32 and train_labels.dtype == np.int64
    assert 0 <= train_images.min() and train_images.max() == 1.0
    # Train and test rows together are exactly the file's 1,797 rows: disjoint and complete.
    table = np.loadtxt(DIGITS_FILE, delimiter=",")
    rows = np.concatenate(
        [np.c_[train_images.reshape(-1, 64) * 16, train_labels], np.c_[test_images.reshape(-1, 64) * 16, test_labels]]
    )
    assert np.array_equal(rows[np.lexsort(rows.T)], table[np.lexsort(table.T)])
    per_class = np.bincount(table[:, 64].astype(int))
    assert len(per_class) == 10
    assert np.array_equal(np.bincount(test_labels), np.round(0.2 * per_class).astype(int))
    again_images, again_labels = load_digits("test")
    assert np.array_equal(again_images, test_images) and np.array_equal(again_labels, test_labels)


def test_digits_normalisation_constants_are_train_statistics() -> None:
    images, _ = load_digits("train")
    assert images.mean() == pytest.approx(DIGITS_MEAN[0], abs=1e-4)
    assert images.std() == pytest.approx(DIGITS_STD[0], abs=1e-4)


def test_stratified_split_is_seeded_disjoint_and_per_class() -> None:
    labels = np.repeat(np.arange(3), [10, 20, 5])
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert np.intersect1d(kept, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(35))
    assert np.array_equal(np.bincount(labels[held]), [2, 4, 1])
    assert np.array_equal(stratified_split(labels, 0.2, seed=3)[1], held)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=4)[1], held)


# ---------------------------------------------------------------- data module on digits


def test_digits_batches_have_the_documented_shapes() -> None:
    data = StaticImageDataModule(batch_size=32)
    data.prepare_data()
    data.setup()
    for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader(), data.predict_dataloader()):
        images, labels = next(iter(loader))
        assert images.shape == (32, 1, 8, 8) and images.dtype == torch.float32
        assert labels.shape == (32,) and labels.dtype == torch.int64
    assert len(data.train_set) + len(data.val_set) == 1438 and len(data.test_set) == 359


def test_train_val_split_is_disjoint_and_follows_the_seed() -> None:
    first, same, other = (StaticImageDataModule(val_fraction=0.2, seed=s) for s in (0, 0, 1))
    for data in (first, same, other):
        data.setup("fit")
    assert np.intersect1d(first.train_set.indices, first.val_set.indices).size == 0
    assert len(first.train_set) + len(first.val_set) == 1438
    assert np.array_equal(first.val_set.indices, same.val_set.indices)
    assert not np.array_equal(first.val_set.indices, other.val_set.indices)


def test_val_fraction_zero_validates_on_the_test_split() -> None:
    data = StaticImageDataModule(val_fraction=0)
    data.setup("fit")
    assert data.val_set is data.test_set and len(data.train_set) == 1438


def test_validation_images_are_not_augmented() -> None:
    data = StaticImageDataModule(augment=True, cutout=4, val_fraction=0.2)
    data.setup()
    torch.manual_seed(0)
    assert torch.equal(data.val_set[0][0], data.val_set[0][0])
    assert torch.equal(data.test_set[5][0], data.test_set[5][0])
    # The training copy of an image is augmented (cutout zeroes a hole), so loads differ.
    train_loads = [data.train_set[0][0] for _ in range(8)]
    assert any(not torch.equal(train_loads[0], load) for load in train_loads[1:])


@pytest.mark.parametrize(
    ("dataset", "classes", "channels"), [("digits", 10, 1), ("cifar10", 10, 3), ("cifar100", 100, 3), ("imagenet", 1000, 3)]
)
def test_properties_need_no_data(tmp_path: Path, dataset: str, classes: int, channels: int) -> None:
    root = tmp_path / "absent"
    data = StaticImageDataModule(dataset=dataset, root=str(root), download=True, time_steps=6)
    assert (data.num_classes, data.in_channels, data.time_steps) == (classes, channels, 6)
    assert not root.exists()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"time_steps": 0}, "data.time_steps is 0"),
        ({"batch_size": 0}, "data.batch_size is 0"),
        ({"val_fraction": 1.0}, "data.val_fraction is 1.0"),
        ({"cutout": -1}, "data.cutout is -1"),
        ({"auto_augment": True}, "set data.init_args.auto_augment: false for digits"),
        ({"dataset": "mnist"}, "data.dataset is 'mnist'"),
    ],
)
def test_bad_settings_raise_configuration_error(arguments: dict, named: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        StaticImageDataModule(**arguments)


def test_persistent_workers_follow_num_workers() -> None:
    data = StaticImageDataModule(num_workers=1)
    data.setup("test")
    assert data.test_dataloader().persistent_workers
    data = StaticImageDataModule(num_workers=0)
    data.setup("test")
    assert not data.test_dataloader().persistent_workers


def test_trainer_runs_on_digits(tmp_path: Path) -> None:
    class Linear(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(64, 10)

        def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            images, labels = batch
            return torch.nn.functional.cross_entropy(self.layer(images.flatten(1)), labels)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            return self.step(batch)

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
            self.step(batch)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = lightning.Trainer(
        fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(Linear(), datamodule=StaticImageDataModule(batch_size=16))


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize(("dataset", "per_file"), [("cifar10", 8), ("cifar100", 200)])
def test_cifar_loads_the_official_format(tmp_path: Path, dataset: str, per_file: int) -> None:
    colours = write_cifar(tmp_path, dataset, per_file)
    data = StaticImageDataModule(dataset=dataset, root=str(tmp_path), batch_size=8, val_fraction=0.5, cutout=8)
    data.prepare_data()
    data.setup()
    train_files = 5 * per_file if dataset == "cifar10" else per_file
    assert len(data.train_set) + len(data.val_set) == train_files and len(data.test_set) == per_file
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    # Test images are deterministic: each channel holds its written value, normalised.
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION[dataset])
    images, labels = next(iter(data.test_dataloader()))
    expected = (torch.from_numpy(colours["test_batch" if dataset == "cifar10" else "test"][:8]).float() / 255)
    expected = ((expected.view(8, 3, 1, 1) - mean) / std).expand(8, 3, 32, 32)
    assert torch.allclose(images, expected, atol=1e-5)
    assert labels.tolist() == [i % data.num_classes for i in range(8)]


def test_cifar_auto_augment_pipeline_runs(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", 4)
    data = StaticImageDataModule(dataset="cifar10", root=str(tmp_path), batch_size=4, auto_augment=True, cutout=16)
    data.setup("fit")
    images, _ = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32


@pytest.mark.parametrize(("dataset", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_names_the_path_and_the_fix(tmp_path: Path, dataset: str, folder: str) -> None:
    data = StaticImageDataModule(dataset=dataset, root=str(tmp_path))
    data.prepare_data()
    with pytest.raises(DatasetNotFoundError) as error:
        data.setup("fit")
    message = str(error.value)
    assert str(tmp_path / folder) in message
    assert f"set data.init_args.download: true, or place {folder}/" in message and f"under {tmp_path}" in message


def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(url: str, download_root: str, **_: object) -> None:
        (Path(download_root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(static, "download_and_extract_archive", unreachable)
    root = tmp_path / "data"
    data = StaticImageDataModule(dataset="cifar10", root=str(root), download=True)
    with pytest.raises(DatasetNotFoundError, match="could not download CIFAR-10") as error:
        data.prepare_data()
    assert "network is unreachable" in str(error.value) and f"under {root}" in str(error.value)
    assert list(root.iterdir()) == []


def test_download_moves_the_finished_folder_into_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(url: str, download_root: str, **_: object) -> None:
        write_cifar(Path(download_root), "cifar100", 100)

    monkeypatch.setattr(static, "download_and_extract_archive", fake_download)
    data = StaticImageDataModule(dataset="cifar100", root=str(tmp_path), download=True)
    data.prepare_data()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-100-python"]
    data.setup("test")
    assert len(data.test_set) == 100


# ---------------------------------------------------------------- ImageNet


def test_imagenet_reads_image_folders(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", {"n01": 3, "n02": 3})
    write_image_folder(tmp_path / "val", {"n01": 2, "n02": 2}, sizes=(20, 50))
    data = StaticImageDataModule(
        dataset="imagenet", root=str(tmp_path), image_size=16, batch_size=4, val_fraction=0, auto_augment=True
    )
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert set(labels.tolist()) <= {0, 1}
    images, labels = next(iter(data.val_dataloader()))
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(data.val_set[0][0], data.val_set[0][0])


def test_missing_imagenet_names_the_layout(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", {"n01": 1})
    data = StaticImageDataModule(dataset="imagenet", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as error:
        data.setup("test")
    message = str(error.value)
    assert f"ImageNet not found: {tmp_path / 'val'} is not a folder of class folders" in message
    assert f"{tmp_path / 'train'}/<class>/*.JPEG and {tmp_path / 'val'}/<class>/*.JPEG" in message


def test_imagenet_class_folders_must_match(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", {"n01": 1, "n02": 1})
    write_image_folder(tmp_path / "val", {"n01": 1, "n03": 1})
    with pytest.raises(ConfigurationError, match="n02, n03; both must hold the same class folders"):
        StaticImageDataModule(dataset="imagenet", root=str(tmp_path)).setup("test")


# ---------------------------------------------------------------- Cutout


def test_cutout_zeroes_one_square_clipped_at_the_border() -> None:
    image = torch.ones(3, 8, 8)
    centred = cutout(image, 4, (4, 4))
    expected = torch.ones(3, 8, 8)
    expected[:, 2:6, 2:6] = 0
    assert torch.equal(centred, expected) and torch.equal(image, torch.ones(3, 8, 8))
    corner = cutout(image, 4, (0, 7))
    expected = torch.ones(3, 8, 8)
    expected[:, 0:2, 5:8] = 0
    assert torch.equal(corner, expected)


def test_cutout_transform_draws_the_centre_uniformly() -> None:
    torch.manual_seed(0)
    row, col = int(torch.randint(32, ())), int(torch.randint(32, ()))
    torch.manual_seed(0)
    holed = Cutout(8)(torch.ones(3, 32, 32))
    assert torch.equal(holed, cutout(torch.ones(3, 32, 32), 8, (row, col)))
    zero_rows, zero_cols = torch.nonzero(holed[0] == 0, as_tuple=True)
    height = int(zero_rows.max() - zero_rows.min()) + 1
    width = int(zero_cols.max() - zero_cols.min()) + 1
    assert (holed == 0).sum() == 3 * height * width  # one solid rectangle, the same in every channel
    assert (height, width) == (min(row + 4, 32) - max(row - 4, 0), min(col + 4, 32) - max(col - 4, 0))
