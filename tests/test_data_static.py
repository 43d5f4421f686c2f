"""Static image data: embedded digits, CIFAR, ImageNet, MNIST and Fashion-MNIST from files the tests write, transforms."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from helpers import TouchesMarker, idx_bytes, write_cifar, write_idx, write_image_folder, write_mnist
from torchvision.transforms import v2

from snn_lightning.data import Cutout, StaticImageDataModule, cifar, cutout, load_digits, mnist
from snn_lightning.data.digits import DIGITS_FILE, DIGITS_MEAN, DIGITS_SHA256, DIGITS_STD
from snn_lightning.data.idx import read_idx
from snn_lightning.data.split_module import default_num_workers
from snn_lightning.data.splits import stratified_split
from snn_lightning.data.static_datasets import STATIC_DATASETS
from snn_lightning.data.transforms import image_transform
from snn_lightning.errors import ConfigurationError, DatasetNotFoundError

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
    ("dataset", "classes", "channels"),
    [
        ("digits", 10, 1),
        ("mnist", 10, 1),
        ("fashion_mnist", 10, 1),
        ("cifar10", 10, 3),
        ("cifar100", 100, 3),
        ("imagenet", 1000, 3),
    ],
)
def test_properties_need_no_data(tmp_path: Path, dataset: str, classes: int, channels: int) -> None:
    root = tmp_path / "absent"
    data = StaticImageDataModule(dataset=dataset, root=str(root), download=True)
    assert (data.num_classes, data.in_channels) == (classes, channels)
    assert not root.exists()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"batch_size": 0}, "data.batch_size is 0"),
        ({"val_fraction": 1.0}, "data.val_fraction is 1.0"),
        ({"cutout": -1}, "data.cutout is -1"),
        ({"auto_augment": True}, "set data.init_args.auto_augment: false for digits"),
        ({"dataset": "svhn"}, "data.dataset is 'svhn'"),
        ({"dataset": "mnist", "auto_augment": True}, "set data.init_args.auto_augment: false for mnist"),
        ({"dataset": "fashion_mnist", "auto_augment": True}, "auto_augment: false for fashion_mnist"),
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


@pytest.mark.parametrize("workers", [0, 1])
def test_a_temporary_folder_too_long_for_the_workers_socket_is_refused_before_the_run_hangs(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = StaticImageDataModule(num_workers=workers)
    data.setup("fit")
    longest = "/tmp/" + "x" * 70  # 75 bytes: the socket path <folder>/pymp-XXXXXXXX/listener-XXXXXXXX is 107
    monkeypatch.setattr(tempfile, "tempdir", longest)
    assert len(data.train_dataloader()) > 0
    monkeypatch.setattr(tempfile, "tempdir", longest + "x")
    if workers == 0:  # no worker, no socket
        assert len(data.train_dataloader()) > 0
        return
    with pytest.raises(ConfigurationError) as refused:
        data.val_dataloader()
    assert str(refused.value) == (
        f"the temporary folder {longest}x is 76 bytes long, and dataloader workers need one of at most 75 bytes "
        "(they hand batches back through a socket in it, whose path may not exceed 107 bytes; beyond that the run "
        "hangs at its first batch); set TMPDIR to a shorter folder (export TMPDIR=/tmp) or data.num_workers to 0"
    )


@pytest.mark.skipif(sys.platform != "linux", reason="the 107-byte socket path is Linux's")
def test_a_worker_hands_its_batches_back_from_the_longest_temporary_folder_allowed() -> None:
    folder = Path("/tmp") / f"snn-{os.getpid()}-".ljust(75 - len("/tmp/"), "x")
    folder.mkdir()
    script = (
        "import torch\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "loader = DataLoader(TensorDataset(torch.ones(8, 3)), batch_size=4, num_workers=1)\n"
        "print(sum(batch.sum().item() for (batch,) in loader))\n"
    )
    try:
        env = {**os.environ, "TMPDIR": str(folder)}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(folder)
    assert len(str(folder)) == 75
    assert (done.returncode, done.stdout) == (0, "24.0\n"), done.stderr[-2000:]


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
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in STATIC_DATASETS[dataset].normalization)
    images, labels = next(iter(data.test_dataloader()))
    expected = torch.from_numpy(colours["test_batch" if dataset == "cifar10" else "test"][:8]).float() / 255
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


class Python2Array:
    """A uint8 array pickled as Python 2 and numpy 1 wrote the official batches: byte strings as latin-1 str."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self):
        reconstruct, (subtype, shape, code), state = self.array.__reduce__()
        return reconstruct, (subtype, shape, code.decode("latin1")), (*state[:4], state[4].decode("latin1"))


def test_cifar_reads_batches_pickled_by_python2_and_numpy1(tmp_path: Path) -> None:
    images = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    payload = pickle.dumps({"data": Python2Array(images), "labels": [3, 7]}, protocol=2)
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # numpy 1's module name
    (tmp_path / "data_batch_1").write_bytes(payload)
    read_images, labels = cifar.read_cifar(tmp_path, ["data_batch_1"])
    assert np.array_equal(read_images, images.reshape(2, 3, 32, 32)) and labels.tolist() == [3, 7]


def test_cifar_batch_naming_another_object_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    batch = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "note": TouchesMarker(marker)}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(DatasetNotFoundError) as error:
        cifar.read_cifar(tmp_path, ["data_batch_1"])
    assert not marker.exists()
    assert str(error.value) == (
        f"{tmp_path / 'data_batch_1'} is not a CIFAR batch (it names the Python object pathlib.Path.touch, which a "
        f"CIFAR batch never holds, so nothing in it was run); delete {tmp_path} and run again with "
        f"data.init_args.download: true to download it afresh"
    )


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("truncated", "(pickle data was truncated)"),
        ("not a pickle", "(invalid load key, 'n'.)"),
        ("persistent id", "(A load persistent id instruction was encountered, but no persistent_load"),
        ("not a dict", "expected a dict of uint8 'data' rows of 3072 values"),
        ("float images", "expected a dict of uint8 'data' rows of 3072 values"),
        ("labels missing", "as many integer 'labels' or 'fine_labels'"),
        ("labels fewer than images", "as many integer 'labels' or 'fine_labels'"),
    ],
)
def test_damaged_cifar_batch_names_the_file(tmp_path: Path, damage: str, named: str) -> None:
    write_cifar(tmp_path, "cifar10", 4)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]}
    payload = {
        "truncated": path.read_bytes()[:500],
        "not a pickle": b"not a pickle",
        "persistent id": b"\x89PNG\r\n",
        "not a dict": pickle.dumps([batch]),
        "float images": pickle.dumps({**batch, "data": np.zeros((4, 3072))}),
        "labels missing": pickle.dumps({"data": batch["data"]}),
        "labels fewer than images": pickle.dumps({**batch, "labels": [0, 1]}),
    }[damage]
    path.write_bytes(payload)
    data = StaticImageDataModule(dataset="cifar10", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as error:
        data.setup("fit")
    message = str(error.value)
    assert message.startswith(f"{path} is not a CIFAR batch ") and named in message
    assert message.endswith(
        f"delete {path.parent} and run again with data.init_args.download: true to download it afresh"
    )


@pytest.mark.parametrize("dataset", ["cifar10", "mnist", "imagenet"])
@pytest.mark.parametrize("inside", [False, True])
def test_root_that_is_a_file_names_it_whatever_download_says(tmp_path: Path, dataset: str, inside: bool) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    root = a_file / "data" if inside else a_file
    where = f"lies inside {a_file}, a file" if inside else "is a file"
    expected = re.escape(f"data.root {root} {where}, not a folder; set data.init_args.root to the folder holding")
    for download in (False, True):
        data = StaticImageDataModule(dataset=dataset, root=str(root), download=download)
        with pytest.raises(ConfigurationError, match=f"^{expected}"):
            data.prepare_data()
            data.setup("fit")
    assert a_file.read_text() == "not a folder"


def test_digits_ignore_the_root(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    StaticImageDataModule(root=str(tmp_path / "a_file"), download=True).setup("fit")


def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(url: str, download_root: str, **_: object) -> None:
        (Path(download_root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(cifar, "download_and_extract_archive", unreachable)
    root = tmp_path / "data"
    data = StaticImageDataModule(dataset="cifar10", root=str(root), download=True)
    with pytest.raises(DatasetNotFoundError, match="could not download CIFAR-10") as error:
        data.prepare_data()
    assert "network is unreachable" in str(error.value) and f"under {root}" in str(error.value)
    assert list(root.iterdir()) == []


def test_download_moves_the_finished_folder_into_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(url: str, download_root: str, **_: object) -> None:
        write_cifar(Path(download_root), "cifar100", 100)

    monkeypatch.setattr(cifar, "download_and_extract_archive", fake_download)
    data = StaticImageDataModule(dataset="cifar100", root=str(tmp_path), download=True)
    data.prepare_data()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-100-python"]
    data.setup("test")
    assert len(data.test_set) == 100


# ---------------------------------------------------------------- ImageNet


def test_imagenet_reads_image_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two class folders stand for ImageNet's 1,000, which the data module checks for.
    monkeypatch.setitem(STATIC_DATASETS, "imagenet", dataclasses.replace(STATIC_DATASETS["imagenet"], num_classes=2))
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


# ---------------------------------------------------------------- Fashion-MNIST / MNIST from IDX files

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# (v / 255 - mean) / std of pixel value 200, worked out by hand from the published train-set statistics.
PIXEL_200 = {"fashion_mnist": (200 / 255 - 0.2860) / 0.3530, "mnist": (200 / 255 - 0.1307) / 0.3081}


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_reads_gzipped_and_unpacked_files(tmp_path: Path, gz: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    read_images = read_idx(write_idx(tmp_path, "images", images, gz), dims=3)
    read_labels = read_idx(write_idx(tmp_path, "labels", labels, gz), dims=1)
    assert read_images.dtype == np.uint8 and read_images.flags.writeable and np.array_equal(read_images, images)
    assert np.array_equal(read_labels, labels)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (idx_bytes(np.zeros(3, np.uint8)), "its magic is 0x00000801, expected 0x00000803"),
        (b"\0\0\x0b\x03" + bytes(12), "its magic is 0x00000b03, expected 0x00000803"),
        (b"\0\0", "its magic is 2 bytes long"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8))[:10], "ends inside its IDX header (10 of 16 bytes)"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8))[:-1], "holds 23 values but its IDX header (2 x 3 x 4) needs 24"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8)) + b"\0", "holds more values but its IDX header (2 x 3 x 4) needs 24"),
        (b"\0\0\x08\x03" + b"\xff" * 12, "header (4294967295 x 4294967295 x 4294967295) asking for more values"),
    ],
)
def test_read_idx_refuses_malformed_files(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "images"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{path} ")) as error:
        read_idx(path, dims=3)
    assert named in str(error.value)


@pytest.mark.parametrize("content", ["truncated", "garbage"])
def test_read_idx_names_a_damaged_gzip_stream(tmp_path: Path, content: str) -> None:
    packed = gzip.compress(idx_bytes(np.ones((4, 28, 28), np.uint8)))
    path = tmp_path / "images.gz"
    path.write_bytes(packed[: len(packed) // 2] if content == "truncated" else packed[:12] + bytes(200))
    with pytest.raises(ValueError, match=re.escape(f"{path} cannot be read")):
        read_idx(path, dims=3)


@pytest.mark.parametrize(
    ("dataset", "layout", "gz"),
    [
        ("fashion_mnist", "torchvision", True),
        ("fashion_mnist", "debian", True),
        ("mnist", "torchvision", False),
        ("mnist", "debian", False),
    ],
)
def test_idx_datasets_load_from_both_layouts(tmp_path: Path, dataset: str, layout: str, gz: bool) -> None:
    raw = tmp_path / ("FashionMNIST" if dataset == "fashion_mnist" else "MNIST") / "raw"
    folder = raw if layout == "torchvision" else tmp_path
    arrays = write_mnist(folder, gz)
    data = StaticImageDataModule(dataset=dataset, root=str(tmp_path), val_fraction=0)
    data.setup("test")
    assert len(data.test_set) == 10 and (data.in_channels, data.num_classes) == (1, 10)
    image, label = data.test_set[4]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label == 4
    assert image[0, 3, 5].item() == pytest.approx(PIXEL_200[dataset], abs=1e-5)
    mean, std = (value[0] for value in STATIC_DATASETS[dataset].normalization)
    expected = (torch.from_numpy(arrays["t10k-images-idx3-ubyte"][4]).float() / 255 - mean) / std
    assert torch.allclose(image[0], expected, atol=1e-5)
    # The source keeps the uint8 images only; each sample is scaled and normalised when read.
    assert data.test_set.source.images.dtype == torch.uint8 and data.test_set.source.images.shape == (10, 1, 28, 28)


def test_fashion_mnist_data_module_serves_batches(tmp_path: Path) -> None:
    write_mnist(tmp_path, train=40)
    data = StaticImageDataModule(dataset="fashion_mnist", root=str(tmp_path), batch_size=8, val_fraction=0.25)
    data.prepare_data()
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set)) == (30, 10)
    assert np.intersect1d(data.train_set.indices, data.val_set.indices).size == 0
    for loader in (data.train_dataloader(), data.val_dataloader()):
        images, labels = next(iter(loader))
        assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (8,) and labels.dtype == torch.int64 and labels.max() < 10


@pytest.mark.parametrize("dataset", ["fashion_mnist", "mnist"])
def test_missing_idx_file_names_the_path_and_both_fixes(tmp_path: Path, dataset: str) -> None:
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    data = StaticImageDataModule(dataset=dataset, root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as error:
        data.setup("test")
    message = str(error.value)
    raw = tmp_path / ("FashionMNIST" if dataset == "fashion_mnist" else "MNIST") / "raw"
    assert f"{tmp_path / 't10k-labels-idx1-ubyte.gz'} missing" in message
    assert f"set data.init_args.download: true to download them into {raw}" in message
    if dataset == "fashion_mnist":
        debian = "apt-get install dataset-fashion-mnist and set data.init_args.root: /usr/share/datasets/fashion-mnist"
        assert debian in message
    else:
        assert "place the four IDX files (.gz or unpacked, from https://" in message and f"in {raw}" in message


def test_empty_root_names_the_torchvision_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        StaticImageDataModule(dataset="fashion_mnist", root=str(tmp_path)).setup("fit")
    raw = tmp_path / "FashionMNIST" / "raw"
    assert str(raw / "train-images-idx3-ubyte.gz") in str(error.value)
    assert str(raw / "t10k-labels-idx1-ubyte.gz") in str(error.value)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("truncated gzip", "cannot be read (EOFError"),
        ("wrong magic", "its magic is 0x00000801, expected 0x00000803"),
        ("short payload", "holds 15679 values but its IDX header (20 x 28 x 28) needs 15680"),
        ("wrong side", "holds 32x32 images, expected 28x28"),
        ("label out of range", "holds label 10, expected labels in [0, 10)"),
        ("label count", "holds 19 labels but"),
    ],
)
def test_damaged_idx_file_names_the_file(tmp_path: Path, damage: str, named: str) -> None:
    arrays = write_mnist(tmp_path)
    images, labels = tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz"
    damaged = labels if damage.startswith("label") else images
    if damage == "truncated gzip":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "wrong magic":
        images.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + idx_bytes(arrays["train-images-idx3-ubyte"])[4:]))
    elif damage == "short payload":
        images.write_bytes(gzip.compress(idx_bytes(arrays["train-images-idx3-ubyte"])[:-1]))
    elif damage == "wrong side":
        write_idx(tmp_path, "train-images-idx3-ubyte", np.zeros((20, 32, 32), np.uint8))
    elif damage == "label out of range":
        write_idx(tmp_path, "train-labels-idx1-ubyte", np.full(20, 10, np.uint8))
    else:
        write_idx(tmp_path, "train-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DatasetNotFoundError) as error:
        StaticImageDataModule(dataset="fashion_mnist", root=str(tmp_path)).setup("fit")
    message = str(error.value)
    assert str(damaged) in message and named in message
    assert "delete it and set data.init_args.download: true" in message


def fake_download_url(calls: list[str]):
    """Return a stand-in for torchvision's download_url that writes a small IDX file instead of fetching one."""
    rng = np.random.default_rng(1)

    def download_url(url: str, root: str, filename: str, md5: str) -> None:
        calls.append(url)
        name = filename.removesuffix(".gz")
        count = 20 if name.startswith("train") else 10
        array = rng.integers(0, 256, (count, 28, 28)) if "images" in name else np.arange(count) % 10
        write_idx(Path(root), name, array.astype(np.uint8))

    return download_url


def test_download_false_never_touches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(mnist, "download_url", fake_download_url(calls))
    data = StaticImageDataModule(dataset="fashion_mnist", root=str(tmp_path / "data"))
    data.prepare_data()
    with pytest.raises(DatasetNotFoundError):
        data.setup("fit")
    assert calls == [] and not (tmp_path / "data").exists()


def test_download_writes_torchvision_layout_only_when_files_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(mnist, "download_url", fake_download_url(calls))
    data = StaticImageDataModule(dataset="fashion_mnist", root=str(tmp_path), download=True, val_fraction=0.5)
    data.prepare_data()
    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FashionMNIST"]
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in IDX_NAMES)
    assert len(calls) == 4 and all(url.startswith(mnist.FashionMNIST.mirrors[0]) for url in calls)
    data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == 20
    data.prepare_data()
    # Debian's layout in root counts as present too: nothing is fetched.
    debian = tmp_path / "debian"
    write_mnist(debian)
    StaticImageDataModule(dataset="fashion_mnist", root=str(debian), download=True).prepare_data()
    assert len(calls) == 4


def test_failed_idx_download_names_the_url_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(url: str, root: str, filename: str, md5: str) -> None:
        (Path(root) / filename).write_bytes(b"partial")
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(mnist, "download_url", unreachable)
    root = tmp_path / "data"
    data = StaticImageDataModule(dataset="mnist", root=str(root), download=True)
    with pytest.raises(DatasetNotFoundError) as error:
        data.prepare_data()
    message = str(error.value)
    assert message.startswith("could not download MNIST from ")
    assert f"{mnist.MNIST.mirrors[0]}train-images-idx3-ubyte.gz" in message and "network is unreachable" in message
    assert f"in {root / 'MNIST' / 'raw'}" in message
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(("dataset", "flips"), [("fashion_mnist", True), ("mnist", False)])
def test_grey_train_augmentation_is_random_and_evaluation_is_not(dataset: str, flips: bool) -> None:
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8))
    train, evaluation = image_transform(dataset, train=True), image_transform(dataset, train=False)
    steps = {type(step).__name__ for step in train.transforms}
    assert "RandomCrop" in steps and ("RandomHorizontalFlip" in steps) == flips
    torch.manual_seed(0)
    augmented = [train(image) for _ in range(4)]
    torch.manual_seed(0)
    assert all(torch.equal(first, again) for first, again in zip(augmented, [train(image) for _ in range(4)]))
    plain = evaluation(image)
    assert torch.equal(plain, evaluation(image)) and plain.shape == (1, 28, 28)
    assert any(not torch.equal(view, plain) for view in augmented)


@pytest.mark.parametrize(
    ("dataset", "padding", "steps"),
    [
        ("fashion_mnist", 0, ["RandomHorizontalFlip"]),
        ("fashion_mnist", 3, ["RandomCrop", "RandomHorizontalFlip"]),
        ("mnist", 0, []),
        ("cifar10", None, ["RandomCrop", "RandomHorizontalFlip"]),
    ],
)
def test_crop_padding_sets_or_removes_the_random_shift(dataset: str, padding: int | None, steps: list[str]) -> None:
    train = image_transform(dataset, train=True, crop_padding=padding)
    random_steps = [step for step in train.transforms if type(step).__name__.startswith("Random")]
    assert [type(step).__name__ for step in random_steps] == steps
    crops = [step for step in random_steps if isinstance(step, v2.RandomCrop)]
    expected = {None: 4}.get(padding, padding)
    assert all(crop.padding == [expected] * 4 for crop in crops)


def test_crop_padding_below_zero_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match=r"data.crop_padding is -1; set it to an integer >= 0"):
        StaticImageDataModule(dataset="fashion_mnist", crop_padding=-1)


@pytest.mark.parametrize(
    ("settings", "shape"),
    [
        ({"dataset": "digits"}, (1, 8, 8)),
        ({"dataset": "mnist"}, (1, 28, 28)),
        ({"dataset": "fashion_mnist"}, (1, 28, 28)),
        ({"dataset": "cifar10"}, (3, 32, 32)),
        ({"dataset": "cifar100"}, (3, 32, 32)),
        ({"dataset": "imagenet", "image_size": 160}, (3, 160, 160)),
    ],
)
def test_input_shape_needs_no_data(tmp_path: Path, settings: dict, shape: tuple[int, int, int]) -> None:
    data = StaticImageDataModule(root=str(tmp_path / "absent"), **settings)
    assert data.input_shape == shape
    assert not (tmp_path / "absent").exists()


def test_digits_input_shape_is_that_of_its_images() -> None:
    data = StaticImageDataModule(val_fraction=0, num_workers=0)
    data.setup("test")
    assert tuple(data.test_set[0][0].shape) == data.input_shape


@pytest.mark.parametrize(("cpus", "processes", "workers"), [(1, 1, 1), (2, 1, 1), (4, 1, 3), (32, 1, 8), (16, 2, 7)])
def test_default_num_workers_follow_the_cpus_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch, cpus: int, processes: int, workers: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_num_workers(processes) == workers
    data = StaticImageDataModule(dataset="mnist")
    assert data.num_workers is None and data.workers == default_num_workers()
    assert StaticImageDataModule(dataset="mnist", num_workers=0).workers == 0


def test_the_embedded_digits_load_in_the_main_process_by_default() -> None:
    data = StaticImageDataModule()
    data.setup("fit")
    assert data.num_workers is None and data.workers == 0 and data.train_dataloader().num_workers == 0
    assert StaticImageDataModule(num_workers=1).workers == 1
