"""Helpers several test files share: the CLI run in-process, and datasets written as files in their real formats."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import tonic
from conftest import REPO
from PIL import Image

from snn_lightning.cli import main

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
# One epoch of one training and one validation batch of a narrow quickstart network: ends in seconds.
ONE_BATCH_FIT = [
    "--model.width_multiplier",
    "0.25",
    "--trainer.limit_train_batches",
    "1",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.max_epochs",
    "1",
    "--trainer.enable_progress_bar",
    "false",
]
# Two training batches and one validation batch of one epoch, of any config.
TWO_BATCHES = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
]
# What SLURM sets in the one task of a one-task job (SLURMEnvironment detects it; the run folder is slurm_4242).
SLURM_ONE_TASK = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "node1",
    "SLURM_NTASKS_PER_NODE": "1",
}
# Two training batches and one batch of every evaluation loop of a narrow network, quietly.
SHORT_RUN = [
    "--model.width_multiplier",
    "0.25",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.limit_test_batches",
    "1",
    "--trainer.limit_predict_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]

NMNIST_DTYPE = tonic.datasets.NMNIST.dtype

# --- the CLI ---------------------------------------------------------------------------------------


def run_main(args, capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def cli_modes() -> dict[str, object]:
    """Return the arguments that let ``SNNLightningCLI`` take any model and data module class, as ``main`` does."""
    return {
        "model_class": L.LightningModule,
        "datamodule_class": L.LightningDataModule,
        "subclass_mode_model": True,
        "subclass_mode_data": True,
    }


# --- static images: CIFAR batches, IDX files (MNIST, Fashion-MNIST), folders of image files ----------


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


class TouchesMarker:
    """An object whose unpickling would create the file ``marker``: code a CIFAR batch must not run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def idx_bytes(array: np.ndarray) -> bytes:
    """Return ``array`` (uint8) in the IDX format: magic 0x0000 08 <dims>, big-endian uint32 sizes, the values."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, name: str, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` as the IDX file ``folder/name`` (``.gz`` added and gzipped when ``gz``); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{name}.gz" if gz else name)
    path.write_bytes(gzip.compress(idx_bytes(array)) if gz else idx_bytes(array))
    return path


def write_mnist(folder: Path, gz: bool = True, train: int = 20, test: int = 10) -> dict[str, np.ndarray]:
    """Write the four IDX files of a small MNIST-like dataset into ``folder``; return the arrays by file name."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        images[:, 3, 5] = 200
        arrays[f"{split}-images-idx3-ubyte"] = images
        arrays[f"{split}-labels-idx1-ubyte"] = (np.arange(count) % 10).astype(np.uint8)
    for name, array in arrays.items():
        write_idx(folder, name, array, gz)
    return arrays


def write_image_folder(
    root: Path, classes: dict[str, int], sizes: tuple[int, int] = (40, 30), modes: tuple[str, ...] = ("RGB",)
) -> None:
    """Write ``count`` random images of ``sizes`` (width, height) per class into ``root/<class>/``.

    The files are alternately JPEG and PNG; their PIL modes (L or RGB) cycle through ``modes``.
    """
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            mode = modes[i % len(modes)]
            shape = (sizes[1], sizes[0]) if mode == "L" else (sizes[1], sizes[0], 3)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / (f"{i}.png" if i % 2 else f"{i}.JPEG"))


# --- events: N-MNIST recordings ----------------------------------------------------------------------


def random_events(rng: np.random.Generator, count: int, width: int, height: int, dtype: np.dtype) -> np.ndarray:
    """Return ``count`` events at random pixels and polarities, t increasing in µs."""
    events = np.zeros(count, dtype=dtype)
    events["x"] = rng.integers(0, width, count)
    events["y"] = rng.integers(0, height, count)
    events["p"] = rng.integers(0, 2, count)
    events["t"] = np.sort(rng.integers(0, 300_000, count))
    return events


def write_nmnist_bin(path: Path, events: np.ndarray) -> None:
    """Write ``events`` in N-MNIST's format: 40 bits each, x, y, polarity bit + 23-bit µs timestamp, big-endian."""
    t = events["t"].astype(np.int64)
    assert t.max() < 2**23, "larger timestamps need overflow events"
    raw = np.stack(
        [events["x"], events["y"], (events["p"] << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF], axis=1
    ).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def write_nmnist(root: Path, counts: dict[str, int], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Write ``counts[part]`` recordings per part (Train/Test), labels 0, 1, 2, 0, ...; return events in file order."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    for part, count in counts.items():
        files = []
        for i in range(count):
            events = random_events(rng, int(rng.integers(50, 200)), 34, 34, NMNIST_DTYPE)
            path = root / "NMNIST" / part / str(i % 3) / f"{i:05d}.bin"
            write_nmnist_bin(path, events)
            files.append((str(path), events))
        written[part] = [events for _, events in sorted(files, key=lambda item: item[0])]
    return written


# --- audio spikes: SHD and SSC HDF5 files -------------------------------------------------------------

Spikes = tuple[np.ndarray, np.ndarray]  # one recording: times in s, channels


def write_audio_spikes(path: Path, recordings: list[Spikes], labels: list[int]) -> None:
    """Write recordings in SHD's and SSC's HDF5 layout: ragged float16 spikes/times (s) and uint16 spikes/units, labels, extra/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        times = file.create_dataset("spikes/times", (len(recordings),), dtype=h5py.vlen_dtype(np.float16))
        units = file.create_dataset("spikes/units", (len(recordings),), dtype=h5py.vlen_dtype(np.uint16))
        for index, (spike_times, channels) in enumerate(recordings):
            times[index] = np.asarray(spike_times, dtype=np.float16)
            units[index] = np.asarray(channels, dtype=np.uint16)
        file["labels"] = np.asarray(labels, dtype=np.uint16)
        file["extra/keys"] = np.array([f"word-{label}".encode() for label in range(max(labels) + 1)])
        file["extra/speaker"] = np.arange(len(labels), dtype=np.uint16) % 3


def write_heidelberg(root: Path, dataset: str, classes: int, per_class: dict[str, int], seed: int = 0) -> None:
    """Write ``per_class[part]`` random recordings of each class (labels 0, 1, ..., 0, 1, ...) to root/SHD/shd_<part>.h5 or SSC's."""
    rng = np.random.default_rng(seed)
    for part, count in per_class.items():
        recordings = []
        for _ in range(count * classes):
            spikes = int(rng.integers(20, 60))
            recordings.append((np.sort(rng.uniform(0, 1, spikes)), rng.integers(0, 700, spikes)))
        labels = [index % classes for index in range(count * classes)]
        write_audio_spikes(root / dataset.upper() / f"{dataset}_{part}.h5", recordings, labels)
