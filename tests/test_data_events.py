"""Event data: N-MNIST, DVS128 Gesture and CIFAR10-DVS files written in their real formats, saccade digits, caching, fewer steps."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import tonic
import tonic.dataset
import tonic.datasets.cifar10dvs
import torch
from conftest import REPO
from helpers import NMNIST_DTYPE, random_events, write_nmnist, write_nmnist_bin
from numpy.lib.recfunctions import structured_to_unstructured

from snn_lightning.callbacks import PerStepAccuracy
from snn_lightning.cli import SNNLightningCLI
from snn_lightning.data import (
    EventDataModule,
    EventsToFrames,
    FrameAugment,
    SaccadeDigits,
    event_datasets,
    frame_cache,
    split_recordings,
)
from snn_lightning.data.event_datasets import CorruptRecordingError
from snn_lightning.data.frame_cache import frame_cache_name
from snn_lightning.errors import ConfigurationError, DatasetNotFoundError
from snn_lightning.modules import SNNClassifier
from snn_lightning.neurons import LIF

GESTURE_DTYPE = tonic.datasets.DVSGesture.dtype


def write_dvsgesture(root: Path, folder: str, labels: list[int], seed: int = 0) -> list[np.ndarray]:
    """Write tonic's preprocessed DVS128 Gesture form: ``<user>_<lighting>/<label>.npy``, columns x, y, p, t in ms."""
    rng = np.random.default_rng(seed)
    written = []
    for user, label in enumerate(labels, start=1):
        events = random_events(rng, 300, 128, 128, GESTURE_DTYPE)
        events["t"] //= 1000
        path = root / "DVSGesture" / folder / f"user{user:02d}_fluorescent" / f"{label}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, structured_to_unstructured(events))
        events["t"] *= 1000  # what tonic returns: µs
        written.append(events)
    return written


def nmnist_module(root: Path, **kwargs) -> EventDataModule:
    settings = {"dataset": "nmnist", "root": str(root), "frames": 5, "augment": None, "val_fraction": 0.0}
    settings["num_workers"] = 0  # frames in this process, where the tests' monkeypatches act
    return EventDataModule(**(settings | kwargs))


def clips(dataset) -> list[np.ndarray]:
    return [dataset[i][0].numpy() for i in range(len(dataset))]


@pytest.fixture
def nmnist_root(tmp_path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    return tmp_path, write_nmnist(tmp_path, {"Train": 9, "Test": 6})


# ---------------------------------------------------------------- frames


@pytest.mark.parametrize("binning", ["n_event_bins", "n_time_bins"])
def test_nmnist_frames_equal_tonic_to_frame(nmnist_root, binning):
    root, written = nmnist_root
    data = nmnist_module(root, binning=binning)
    data.setup("test")
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), **{binning: 5})
    for clip, events in zip(clips(data.test_set), written["Test"]):
        np.testing.assert_array_equal(clip, to_frame(events))
    # tonic's own reader gives back exactly the events written.
    first = sorted((root / "NMNIST" / "Test").rglob("*.bin"))[0]
    np.testing.assert_array_equal(tonic.io.read_mnist_file(str(first), NMNIST_DTYPE), written["Test"][0])


def test_dvsgesture_frames_equal_tonic_after_resize(tmp_path):
    written = write_dvsgesture(tmp_path, "ibmGestureTest", [3, 7, 10])
    data = EventDataModule("dvsgesture", str(tmp_path), frames=4, frame_size=32, val_fraction=0.0, augment=None)
    data.setup("test")
    assert data.num_classes == 11 and data.in_channels == 2
    reference = tonic.transforms.Compose(
        [
            tonic.transforms.Downsample(sensor_size=(128, 128, 2), target_size=(32, 32)),
            tonic.transforms.ToFrame(sensor_size=(32, 32, 2), n_event_bins=4),
        ]
    )
    labels = [data.test_set[i][1] for i in range(3)]
    assert labels == [3, 7, 10]
    for clip, events in zip(clips(data.test_set), written):
        assert clip.shape == (4, 2, 32, 32)
        np.testing.assert_array_equal(clip, reference(events))


def test_event_counts_are_conserved_through_framing_and_resizing():
    events = random_events(np.random.default_rng(1), 1003, 128, 128, GESTURE_DTYPE)
    full = EventsToFrames((128, 128, 2), frames=10)(events)
    small = EventsToFrames((128, 128, 2), frames=10, frame_size=(64, 64))(events)
    assert full.shape == (10, 2, 128, 128) and small.shape == (10, 2, 64, 64)
    # n_event_bins: every frame holds floor(N / T) events; ToFrame leaves out the N mod T last ones.
    assert full.sum() == small.sum() == 1000
    np.testing.assert_array_equal(full.sum(axis=(1, 2, 3)), np.full(10, 100))
    # A 128 -> 64 resize sums 2x2 blocks.
    np.testing.assert_array_equal(small, full.reshape(10, 2, 64, 2, 64, 2).sum(axis=(3, 5)))
    by_time = EventsToFrames((128, 128, 2), frames=10, binning="n_time_bins")(events)
    # n_time_bins: windows end before the last timestamp, whose events ToFrame leaves out.
    assert by_time.sum() == np.sum(events["t"] < events["t"][-1])


def test_drop_event_removes_that_fraction_of_events():
    events = random_events(np.random.default_rng(2), 1000, 34, 34, NMNIST_DTYPE)
    frames = EventsToFrames((34, 34, 2), frames=1, drop_event=0.25)(events)
    assert frames.sum() == 750


def test_batches_are_time_major_float_frames(nmnist_root):
    root, _ = nmnist_root
    data = nmnist_module(root, batch_size=4, val_fraction=0.3)
    data.setup("fit")
    frames, labels = next(iter(data.train_dataloader()))
    assert frames.shape == (5, 4, 2, 34, 34) and frames.dtype == torch.float32
    assert labels.shape == (4,) and labels.dtype == torch.int64
    assert len(data.train_set) + len(data.val_set) == 9


# ---------------------------------------------------------------- splits


@pytest.mark.parametrize("rule", ["first_90", "random_90", "first_100_test"])
def test_each_split_rule_is_disjoint_complete_and_deterministic(rule):
    labels = np.repeat(np.arange(3), [150, 120, 101])
    train, test = split_recordings(labels, rule, seed=0)
    again = split_recordings(labels, rule, seed=0)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    counts = np.bincount(labels[test], minlength=3)
    if rule == "first_100_test":
        np.testing.assert_array_equal(counts, [100, 100, 100])
        assert set(test) == set(range(100)) | set(range(150, 250)) | set(range(270, 370))
    else:
        np.testing.assert_array_equal(counts, [15, 12, 10] if rule == "random_90" else [15, 12, 10])
    if rule == "first_90":  # the last 10 % of every class, in file order
        assert set(test) == set(range(135, 150)) | set(range(258, 270)) | set(range(361, 371))
    if rule == "random_90":
        assert not np.array_equal(test, split_recordings(labels, rule, seed=1)[1])


def write_cifar10dvs(root: Path, per_class: int, monkeypatch) -> None:
    """Write a CIFAR10-DVS folder tree; its .aedat4 files hold numpy arrays that a patched tonic reader loads."""
    rng = np.random.default_rng(3)
    dtype = tonic.datasets.CIFAR10DVS.dtype
    for name in tonic.datasets.CIFAR10DVS.classes:
        for i in range(per_class):
            path = root / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat4"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as file:
                np.save(file, random_events(rng, 40, 128, 128, dtype))
    # Reading real .aedat4 needs the optional `aedat` package; the rest of the path is tonic's.
    monkeypatch.setattr(tonic.datasets.cifar10dvs, "read_aedat4", lambda path: np.load(path))


def test_cifar10dvs_split_defaults_to_first_90_and_is_logged(tmp_path, monkeypatch, caplog):
    write_cifar10dvs(tmp_path, per_class=10, monkeypatch=monkeypatch)
    data = EventDataModule("cifar10dvs", str(tmp_path), frames=2, frame_size=16, val_fraction=0.0, augment=None)
    assert data.split_rule == "first_90"
    with caplog.at_level(logging.INFO):
        data.setup("fit")
    assert "split first_90 (per class, the first 90 % of recordings in file-name order train" in caplog.text
    assert "90 train and 10 test recordings; validation on the test split" in caplog.text
    train, test = data.train_set.indices, data.test_set.indices
    assert len(train) == 90 and len(test) == 10 and np.intersect1d(train, test).size == 0
    files = data._recordings("all").files
    # File-name order: "_9" sorts last in each class, so it is the test recording.
    assert all(files[i].endswith("_9.aedat4") for i in test)
    random = EventDataModule("cifar10dvs", str(tmp_path), frames=2, frame_size=16, split="random_90", seed=5)
    random.setup()
    assert len(random.test_set) == 10 and not np.array_equal(random.test_set.indices, test)
    # Both splits read one cache: frames are cached per recording.
    assert len(list((tmp_path / "frames_cache").iterdir())) == 1


def test_split_must_match_the_dataset():
    with pytest.raises(ConfigurationError, match="CIFAR10-DVS ships without a train/test split"):
        EventDataModule("cifar10dvs", split="official")
    with pytest.raises(ConfigurationError, match="N-MNIST has an official train/test split"):
        EventDataModule("nmnist", split="first_90")


# ---------------------------------------------------------------- cache


def test_cache_folder_changes_with_every_frame_setting(nmnist_root):
    base = EventsToFrames((34, 34, 2), frames=10)
    changed = [
        EventsToFrames((34, 34, 2), frames=8),
        EventsToFrames((34, 34, 2), frames=10, binning="n_time_bins"),
        EventsToFrames((34, 34, 2), frames=10, frame_size=(32, 32)),
        EventsToFrames((34, 34, 2), frames=10, denoise_filter_time=5000),
    ]
    names = {frame_cache_name("nmnist", "train", frames, "files") for frames in [base, *changed]}
    assert len(names) == 5
    assert frame_cache_name("nmnist", "train", base, "files") == frame_cache_name("nmnist", "train", base, "files")
    assert frame_cache_name("nmnist", "train", base, "other") != frame_cache_name("nmnist", "train", base, "files")
    assert frame_cache_name("nmnist", "test", base, "files") != frame_cache_name("nmnist", "train", base, "files")
    # The module's cache folder is that name; a rewritten recording gives a new folder.
    root, _ = nmnist_root
    data = nmnist_module(root)
    data.setup("test")
    (folder,) = (root / "frames_cache").iterdir()
    assert folder.name.startswith("nmnist-test-n_event_bins5-34x34-nodenoise-")
    assert (folder / "complete.json").is_file() and len(list(folder.glob("*.hdf5"))) == 6
    write_nmnist(root, {"Test": 6}, seed=9)
    nmnist_module(root).setup("test")
    assert len(list((root / "frames_cache").iterdir())) == 2


def test_recording_replaced_by_same_size_and_time_gets_new_frames(nmnist_root):
    root, written = nmnist_root
    nmnist_module(root).setup("test")
    (old_folder,) = (root / "frames_cache").iterdir()
    first = sorted((root / "NMNIST" / "Test").rglob("*.bin"))[0]
    before = first.stat()
    replacement = random_events(np.random.default_rng(1), len(written["Test"][0]), 34, 34, NMNIST_DTYPE)
    write_nmnist_bin(first, replacement)
    os.utime(first, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (first.stat().st_size, first.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    data = nmnist_module(root)
    data.setup("test")
    assert Path(data.test_set.source.cache_path) != old_folder
    reference = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_event_bins=5)
    np.testing.assert_array_equal(clips(data.test_set)[0], reference(replacement))


def test_dataset_copied_without_its_times_keeps_its_cache(nmnist_root, tmp_path_factory, caplog):
    root, _ = nmnist_root
    for path in (root / "NMNIST").rglob("*.bin"):
        os.utime(path, (1e9, 1e9))  # 2001: a copy made now cannot have the same times
    nmnist_module(root).setup("test")
    (folder,) = (root / "frames_cache").iterdir()
    copy = tmp_path_factory.mktemp("scratch")
    shutil.copytree(root / "NMNIST", copy / "NMNIST", copy_function=shutil.copy)  # cp without -p: new mtimes
    assert all(path.stat().st_mtime > 1e9 for path in (copy / "NMNIST").rglob("*.bin"))
    data = nmnist_module(copy, cache_dir=str(root / "frames_cache"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        data.setup("test")
    assert Path(data.test_set.source.cache_path) == folder
    assert list((root / "frames_cache").iterdir()) == [folder]
    assert "caching the frames" not in caplog.text


def test_recordings_identity_is_deterministic_and_hashes_both_ends_of_each_file(nmnist_root, tmp_path):
    root, _ = nmnist_root
    identity = nmnist_module(root)._recordings("test").identity()
    assert identity == nmnist_module(root)._recordings("test").identity()
    first = sorted((root / "NMNIST" / "Test").rglob("*.bin"))[0]
    content = first.read_bytes()  # a small file is hashed whole
    digest = hashlib.blake2b(content, digest_size=16).hexdigest()
    assert identity.splitlines()[0] == f"Test/0/00000.bin {len(content)} {digest}"
    # A large file: its first and last blocks count, its middle does not.
    large = tmp_path / "large.bin"
    data = bytearray(os.urandom(3 * 64 * 1024))
    large.write_bytes(data)
    fingerprint = event_datasets._file_fingerprint(str(large))
    for position, counts in ((0, True), (len(data) // 2, False), (len(data) - 1, True)):
        changed = data.copy()
        changed[position] ^= 0xFF
        large.write_bytes(changed)
        assert (event_datasets._file_fingerprint(str(large)) != fingerprint) == counts, position


def test_interrupted_cache_write_leaves_no_sample_and_resumes(nmnist_root, monkeypatch):
    root, written = nmnist_root
    real_save = frame_cache.save_to_disk_cache

    def save_then_die(data, targets, file_path, compress=True):
        Path(file_path).write_bytes(b"\x89HDF half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(frame_cache, "save_to_disk_cache", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        nmnist_module(root).setup("test")
    (folder,) = (root / "frames_cache").iterdir()
    assert list(folder.iterdir()) == [], "nothing half-written may remain under any name"
    monkeypatch.setattr(frame_cache, "save_to_disk_cache", real_save)
    data = nmnist_module(root)
    data.setup("test")
    reference = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_event_bins=5)
    np.testing.assert_array_equal(clips(data.test_set)[0], reference(written["Test"][0]))


def test_a_read_only_cache_missing_frames_names_the_folder(nmnist_root, monkeypatch):
    root, _ = nmnist_root

    def refuse(data, targets, file_path, compress=True):
        raise PermissionError(13, "Permission denied", str(file_path))

    monkeypatch.setattr(frame_cache, "save_to_disk_cache", refuse)  # root ignores chmod, so refuse the write
    with pytest.raises(
        ConfigurationError,
        match=r"frame cache .*frames_cache.* is not writable \(Permission denied\) and lacks sample 0; set data.init_args.cache_dir",
    ):
        nmnist_module(root).setup("test")


def test_unreadable_cached_file_error_names_it(nmnist_root):
    root, _ = nmnist_root
    nmnist_module(root).setup("test")
    (folder,) = (root / "frames_cache").iterdir()
    (folder / "2_0.hdf5").write_bytes(b"not hdf5")
    data = nmnist_module(root)
    data.setup("test")  # the cache is complete: setup reads nothing
    with pytest.raises(CorruptRecordingError, match=rf"{folder / '2_0.hdf5'}.*delete the folder"):
        data.test_set[2]


def test_cache_built_by_two_workers_matches(nmnist_root, tmp_path):
    root, _ = nmnist_root
    serial = nmnist_module(root)
    serial.setup("test")
    parallel = nmnist_module(root, num_workers=2, cache_dir=str(tmp_path / "other_cache"))
    parallel.setup("test")
    for one, other in zip(clips(serial.test_set), clips(parallel.test_set)):
        np.testing.assert_array_equal(one, other)


# ---------------------------------------------------------------- augmentation


def test_augmentation_differs_between_epochs_in_train_and_is_absent_in_validation(nmnist_root):
    root, _ = nmnist_root
    data = nmnist_module(root, augment=FrameAugment(), val_fraction=0.3, binning="n_time_bins")
    data.setup("fit")
    torch.manual_seed(0)
    first, second = clips(data.train_set), clips(data.train_set)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))
    cached = data._frames("train")
    for position, index in enumerate(data.train_set.indices):
        assert first[position].sum() > 0
        assert not np.array_equal(first[position], cached[int(index)][0]) or not np.array_equal(
            second[position], cached[int(index)][0]
        )
    for position, index in enumerate(data.val_set.indices):
        np.testing.assert_array_equal(data.val_set[position][0].numpy(), cached[int(index)][0])
        np.testing.assert_array_equal(data.val_set[position][0].numpy(), data.val_set[position][0].numpy())


# ---------------------------------------------------------------- missing and bad data


def test_missing_dataset_names_the_path_and_the_source(tmp_path):
    data = nmnist_module(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError) as error:
        data.setup("test")
    message = str(error.value)
    assert f"{tmp_path / 'nowhere' / 'NMNIST' / 'Test'} holds no *.bin recordings" in message
    assert "download: true" in message and "garrickorchard.com/datasets/n-mnist" in message
    assert not (tmp_path / "nowhere").exists()


def test_failed_download_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", no_network)
    data = EventDataModule("dvsgesture", str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError, match=r"could not download DVS128 Gesture .*no network.*figshare"):
        data.prepare_data()
    assert list(tmp_path.iterdir()) == []


def test_truncated_nmnist_file_error_names_the_file(nmnist_root):
    root, _ = nmnist_root
    victim = sorted((root / "NMNIST" / "Test").rglob("*.bin"))[1]
    victim.write_bytes(victim.read_bytes()[:-2])
    with pytest.raises(CorruptRecordingError, match=rf"{victim}: its \d+ bytes are not a whole number"):
        nmnist_module(root).setup("test")


def test_corrupt_dvsgesture_file_error_names_the_file(tmp_path):
    write_dvsgesture(tmp_path, "ibmGestureTest", [1, 2])
    victim = tmp_path / "DVSGesture" / "ibmGestureTest" / "user02_fluorescent" / "2.npy"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(CorruptRecordingError, match=f"cannot read DVS128 Gesture recording {victim}"):
        EventDataModule("dvsgesture", str(tmp_path), frames=4, val_fraction=0.0).setup("test")


def test_nmnist_file_of_garbage_bytes_error_names_the_file(nmnist_root):
    root, _ = nmnist_root
    victim = sorted((root / "NMNIST" / "Test").rglob("*.bin"))[1]
    victim.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptRecordingError, match=rf"{victim}: \d+ of its \d+ events lie outside the 34x34 sensor"):
        nmnist_module(root).setup("test")


def test_dvsgesture_event_beyond_the_sensor_error_names_the_file(tmp_path):
    write_dvsgesture(tmp_path, "ibmGestureTest", [1, 2])
    victim = tmp_path / "DVSGesture" / "ibmGestureTest" / "user02_fluorescent" / "2.npy"
    columns = np.load(victim)
    columns[5, 1] = 300  # y of event 5
    np.save(victim, columns)
    message = rf"{victim}: 1 of its 300 events lie outside the 128x128 sensor \(event 5 is at x=\d+, y=300\)"
    with pytest.raises(CorruptRecordingError, match=message):
        EventDataModule("dvsgesture", str(tmp_path), frames=4, val_fraction=0.0).setup("test")


def test_recording_without_events_is_an_all_zero_clip_and_counted(nmnist_root):
    root, _ = nmnist_root
    empty = sorted((root / "NMNIST" / "Test").rglob("*.bin"))[2]
    empty.write_bytes(b"")
    data = nmnist_module(root)
    with pytest.warns(UserWarning, match="N-MNIST test: 1 of 6 recordings have no events"):
        data.setup("test")
    assert data.all_zero_clips == {"test": 1}
    clip = data.test_set[2][0]
    assert clip.shape == (5, 2, 34, 34) and not clip.any()
    # A second run reads the count from the finished cache.
    again = nmnist_module(root)
    with pytest.warns(UserWarning, match="1 of 6"):
        again.setup("test")


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigurationError, match="frame_size is 64 but the N-MNIST sensor is 34x34"):
        EventDataModule("nmnist", frame_size=64)
    with pytest.raises(ConfigurationError, match=r"data.frames is 0 \(null: the model's time_steps\); set it to"):
        EventDataModule(frames=0)
    with pytest.raises(ConfigurationError, match="data.frames is null, which takes the model's time_steps, but no"):
        EventDataModule(val_fraction=0.0).setup("test")
    with pytest.raises(ConfigurationError, match="drop_event is 1.0"):
        EventDataModule(augment=FrameAugment(drop_event=1.0))


# ---------------------------------------------------------------- evaluating at fewer steps


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> Path:
    """A folder whose saccade-digit frame caches the tests below share."""
    return tmp_path_factory.mktemp("digits")


def digits_test_split(root: Path, **kwargs) -> EventDataModule:
    data = EventDataModule(root=str(root), val_fraction=0.0, augment=None, **kwargs)
    data.setup("test")
    return data


def test_fewer_frames_bin_the_whole_recording_into_fewer_frames(digits_root):
    trained = digits_test_split(digits_root, frames=4)
    rebinned = digits_test_split(digits_root, frames=2)
    assert Path(rebinned.test_set.source.cache_path).name.startswith("digits_saccades-test-n_event_bins2-")
    to_frame = tonic.transforms.ToFrame(sensor_size=SaccadeDigits.sensor_size, n_event_bins=2)
    recordings = SaccadeDigits(train=False)
    for index in (0, 1, 200):
        clip, full = rebinned.test_set[index][0].numpy(), trained.test_set[index][0].numpy()
        np.testing.assert_array_equal(clip, to_frame(recordings[index][0]))
        assert not np.array_equal(clip, full[:2])
        # Each frame spans two trained ones; bins of floor(N / T) events move at most 4 events across the edges.
        assert np.abs(clip - full.reshape(2, 2, *full.shape[1:]).sum(axis=1)).sum() <= 4


def tiny_snn(time_steps: int, **kwargs) -> SNNClassifier:
    # A low threshold keeps the briefly trained network firing on the sparse random events.
    return SNNClassifier(
        "resnet_mini", num_classes=10, in_channels=2, time_steps=time_steps, neuron=LIF(v_threshold=0.2), **kwargs
    )


def tiny_trainer(root: Path, **kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return L.Trainer(
        default_root_dir=root, callbacks=[PerStepAccuracy()], enable_model_summary=False, **options, **kwargs
    )


@pytest.fixture(scope="module")
def trained_at_4(tmp_path_factory) -> tuple[Path, Path, float]:
    """N-MNIST files, the checkpoint of a tiny SNN fitted at T=4, and the test/acc_t2 of its T=4 test."""
    L.seed_everything(0)
    root = tmp_path_factory.mktemp("nmnist")
    write_nmnist(root, {"Train": 9, "Test": 30})
    data, model = nmnist_module(root, frames=None, frame_size=11), tiny_snn(4)
    trainer = tiny_trainer(root, max_epochs=1)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(root / "t4.ckpt")
    (metrics,) = trainer.test(model, datamodule=data)
    # The answer changes over the steps, so test/acc matching acc_t2 below singles out the first 2 frames.
    assert metrics["test/acc_t2"] != metrics["test/acc_t4"]
    return root, root / "t4.ckpt", metrics["test/acc_t2"]


def test_frames_default_to_the_time_steps_of_the_model_the_trainer_runs(trained_at_4):
    root, checkpoint, _ = trained_at_4
    data = nmnist_module(root, frames=None, frame_size=11)
    tiny_trainer(root).test(tiny_snn(4), datamodule=data, ckpt_path=checkpoint)
    assert data.frame_count() == 4 and Path(data.test_set.source.cache_path).name.startswith(
        "nmnist-test-n_event_bins4-"
    )


def test_checkpoint_evaluated_at_fewer_steps_runs_the_first_frames_of_its_binning(trained_at_4):
    root, checkpoint, acc_t2 = trained_at_4
    data = nmnist_module(root, frames=None, frame_size=11)
    model = tiny_snn(4, eval_time_steps=2)
    (metrics,) = tiny_trainer(root).test(model, datamodule=data, ckpt_path=checkpoint)
    assert data.frame_count() == 4 and metrics["test/acc"] == acc_t2


def test_checkpoint_evaluated_on_rebinned_recordings_sees_fewer_frames(trained_at_4):
    root, checkpoint, _ = trained_at_4
    rebinned = nmnist_module(root, frames=2, frame_size=11)
    truncated = nmnist_module(root, frames=None, frame_size=11)
    for data in (rebinned, truncated):
        tiny_trainer(root).test(tiny_snn(4, eval_time_steps=2), datamodule=data, ckpt_path=checkpoint)
    assert Path(rebinned.test_set.source.cache_path).name.startswith("nmnist-test-n_event_bins2-")
    assert not all(np.array_equal(a, b[:2]) for a, b in zip(clips(rebinned.test_set), clips(truncated.test_set)))
    with pytest.raises(ConfigurationError, match="the data gives 2 frames per clip but the model runs 4 time steps"):
        tiny_trainer(root).test(
            tiny_snn(4), datamodule=nmnist_module(root, frames=2, frame_size=11), ckpt_path=checkpoint
        )


# ---------------------------------------------------------------- saccade digits


def test_saccade_digits_are_deterministic_events_of_both_polarities():
    first, again = SaccadeDigits(train=False), SaccadeDigits(train=False)
    assert len(first) == 359 and len(SaccadeDigits(train=True)) == 1438
    width, height, _ = first.sensor_size
    for index in (0, 1, 200):
        events, label = first[index]
        np.testing.assert_array_equal(events, again[index][0])
        assert label == again[index][1] and 0 <= label <= 9
        assert events.dtype.names == ("x", "y", "t", "p")
        assert len(events) > 1000 and set(np.unique(events["p"])) == {False, True}
        assert np.all(np.diff(events["t"]) >= 0) and 0 <= events["t"][0] and events["t"][-1] < 300_000
        assert events["x"].max() < width and events["y"].max() < height
    assert not np.array_equal(first[0][0], first[1][0])
    assert not np.array_equal(first[0][0], SaccadeDigits(train=False, seed=1)[0][0])


def test_saccade_digits_module_needs_no_files(tmp_path):
    data = EventDataModule(root=str(tmp_path), frames=3, binning="n_time_bins", val_fraction=0.0, augment=None)
    data.setup("test")
    frames, labels = next(iter(data.test_dataloader()))
    assert frames.shape == (3, 32, 2, 22, 22) and data.all_zero_clips == {"test": 0}
    assert {path.name.split("-")[1] for path in (tmp_path / "frames_cache").iterdir()} == {"test"}


@pytest.mark.slow
def test_quickstart_dvs_reaches_90_percent_test_accuracy(in_tmp_dir):
    config = str(REPO / "configs" / "quickstart_dvs.yaml")
    modes = {"model_class": L.LightningModule, "datamodule_class": L.LightningDataModule}
    modes |= {"subclass_mode_model": True, "subclass_mode_data": True}
    cli = SNNLightningCLI(args=["--config", config], run=False, **modes)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (metrics,) = cli.trainer.test(ckpt_path="best", datamodule=cli.datamodule)
    assert metrics["test/acc"] >= 0.90


# ---------------------------------------------------------------- augmentation settings, input shape


def test_augment_is_built_from_yaml_and_stored_as_plain_values(in_tmp_dir):
    config = REPO / "configs" / "quickstart_dvs.yaml"
    modes = {"model_class": L.LightningModule, "datamodule_class": L.LightningDataModule}
    modes |= {"subclass_mode_model": True, "subclass_mode_data": True}
    cli = SNNLightningCLI(args=["--config", str(config)], run=False, **modes)
    assert cli.datamodule.augment == FrameAugment(flip=False, translate=1, rotate=10.0, shear=10.0)
    assert cli.datamodule.hparams["augment"]["translate"] == 1
    off = SNNLightningCLI(args=["--config", str(config), "--data.init_args.augment", "null"], run=False, **modes)
    assert off.datamodule.augment is None
    # Built in Python, the dataclass is kept as a dict: checkpoints hold plain values only.
    assert EventDataModule(augment=FrameAugment(shear=5.0)).hparams["augment"] == {
        "flip": True,
        "translate": 5,
        "rotate": 30.0,
        "shear": 5.0,
        "drop_event": 0.0,
    }


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"translate": -1}, "data.augment.translate is -1"),
        ({"rotate": -2.0}, "data.augment.rotate is -2.0"),
        ({"shear": -3.0}, "data.augment.shear is -3.0"),
        ({"drop_event": -0.1}, "data.augment.drop_event is -0.1"),
    ],
)
def test_bad_augment_settings_name_the_key(settings, named):
    with pytest.raises(ConfigurationError, match=named):
        FrameAugment(**settings)


def test_augment_without_operations_only_flips():
    clip = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).view(2, 2, 3, 4)
    augment = FrameAugment(flip=True, translate=0, rotate=0.0, shear=0.0)
    torch.manual_seed(0)
    views = [augment(clip) for _ in range(20)]
    assert all(torch.equal(view, clip) or torch.equal(view, clip.flip(-1)) for view in views)
    assert any(torch.equal(view, clip.flip(-1)) for view in views)
    assert torch.equal(FrameAugment(flip=False, translate=0, rotate=0.0, shear=0.0)(clip), clip)


@pytest.mark.parametrize(
    ("settings", "shape"),
    [
        ({"dataset": "digits_saccades"}, (2, 22, 22)),
        ({"dataset": "digits_saccades", "frame_size": 11}, (2, 11, 11)),
        ({"dataset": "nmnist"}, (2, 34, 34)),
        ({"dataset": "dvsgesture", "frame_size": 32}, (2, 32, 32)),
        ({"dataset": "cifar10dvs", "frame_size": 64}, (2, 64, 64)),
        ({"dataset": "ncaltech101"}, (2, 180, 240)),
    ],
)
def test_input_shape_is_the_frame_shape_without_reading_data(tmp_path, settings, shape):
    data = EventDataModule(root=str(tmp_path / "absent"), **settings)
    assert data.input_shape == shape
    assert not (tmp_path / "absent").exists()
