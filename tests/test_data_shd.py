"""SHD and SSC through tonic: HDF5 files in their real layout, binned into frames of 700 channels, and trained from the configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tonic.dataset
import torch
from conftest import REPO
from helpers import write_audio_spikes, write_heidelberg

from snn_lightning.cli.main import main
from snn_lightning.data import EventDataModule
from snn_lightning.data.event_datasets import CorruptRecordingError
from snn_lightning.errors import ConfigurationError, DatasetNotFoundError
from snn_lightning.models import SPIKING_ARCHITECTURES, SpikingConvNet

CLASSES = {"shd": 20, "ssc": 35}


def audio_module(dataset: str, root: Path, **options) -> EventDataModule:
    """Return the data module of ``dataset`` at ``root``, 4 frames of equal duration, no augmentation, no workers."""
    settings = dict(frames=4, binning="n_time_bins", augment=None, num_workers=0, val_fraction=0.0) | options
    return EventDataModule(dataset, str(root), **settings)


def test_each_spike_counts_in_its_channel_and_time_bin(tmp_path):
    # Spikes out of time order, as a file could hold them; 0.25 s steps are exact in float16.
    times, channels = [0.5, 0.0, 0.25, 0.5, 0.75, 1.0], [10, 3, 3, 699, 10, 5]
    write_audio_spikes(tmp_path / "SHD" / "shd_test.h5", [(times, channels), ([0.0, 0.5], [1, 1])], [7, 19])
    data = audio_module("shd", tmp_path)
    assert data.input_shape == (700, 1, 1) and data.in_channels == 700 and data.num_classes == 20
    data.setup("test")
    clip, label = data.test_set[0]
    assert clip.shape == (4, 700, 1, 1) and label == 7
    expected = np.zeros((4, 700, 1, 1), dtype=np.float32)
    # 4 bins of 250 ms from the first spike; the last timestamp (1.0 s) falls past the last bin, as tonic bins it.
    for frame, channel in [(0, 3), (1, 3), (2, 10), (2, 699), (3, 10)]:
        expected[frame, channel] = 1
    np.testing.assert_array_equal(clip.numpy(), expected)
    assert data.test_set[1][1] == 19


@pytest.mark.parametrize("dataset", sorted(CLASSES))
def test_labels_and_class_count_come_from_the_files(tmp_path, dataset):
    write_heidelberg(tmp_path, dataset, CLASSES[dataset], {"train": 1, "test": 1})
    data = audio_module(dataset, tmp_path)
    data.setup("fit")
    labels = [label for _, label in data.train_set]
    assert labels == list(range(CLASSES[dataset])) and data.num_classes == CLASSES[dataset]
    assert {clip.shape for clip, _ in data.val_set} == {(4, 700, 1, 1)}, "val_fraction 0: the test file"


@pytest.mark.parametrize("dataset", sorted(CLASSES))
def test_missing_file_names_the_folder_the_file_and_how_to_get_it(tmp_path, dataset):
    write_heidelberg(tmp_path, dataset, CLASSES[dataset], {"test": 1})  # the training file is missing
    with pytest.raises(DatasetNotFoundError) as error:
        audio_module(dataset, tmp_path).setup("fit")
    message = str(error.value)
    folder = tmp_path / dataset.upper()
    assert message.startswith(f"{dataset.upper()} not found: {folder} holds no {dataset}_train.h5;")
    assert "download: true" in message and f"https://zenkelab.org/datasets/ ({dataset}_train.h5.zip" in message
    assert f"{tmp_path} holds {dataset.upper()}/{dataset}_train.h5 and {dataset.upper()}/{dataset}_test.h5" in message


def test_download_fetches_each_part_through_tonic(tmp_path, monkeypatch):
    fetched = []

    def fake_download(url, location, filename, md5):
        fetched.append(url)
        write_audio_spikes(Path(location) / filename.removesuffix(".zip"), [([0.0, 0.5], [0, 1])] * 35, list(range(35)))

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fake_download)
    audio_module("ssc", tmp_path, download=True).prepare_data()
    assert fetched == [f"https://zenkelab.org/datasets/ssc_{part}.h5.zip" for part in ("train", "test")]
    assert sorted(path.name for path in (tmp_path / "SSC").iterdir()) == ["ssc_test.h5", "ssc_train.h5"]


def test_channel_past_700_is_a_corrupt_file_naming_it(tmp_path):
    victim = tmp_path / "SHD" / "shd_test.h5"
    write_audio_spikes(victim, [([0.0, 0.5], [3, 700])], [0])
    with pytest.raises(CorruptRecordingError, match=f"cannot read SHD recording {victim}: .*channel 700, past 700"):
        audio_module("shd", tmp_path).setup("test")


def test_truncated_file_names_it_and_where_to_get_it_again(tmp_path):
    write_heidelberg(tmp_path, "ssc", 35, {"test": 1})
    victim = tmp_path / "SSC" / "ssc_test.h5"
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(CorruptRecordingError, match=f"cannot read {victim} .*unzip it again from .*ssc_test.h5.zip"):
        audio_module("ssc", tmp_path).setup("test")


def test_denoise_is_refused_for_frames_of_one_pixel(tmp_path):
    with pytest.raises(ConfigurationError, match="SHD's frames are one pixel.*set it to 0"):
        audio_module("shd", tmp_path, denoise_filter_time=1000.0)


@pytest.mark.parametrize("dataset", sorted(CLASSES))
def test_config_fits_on_generated_files(in_tmp_dir, dataset):
    # 6 recordings per class: the config's 10 % validation hold-out keeps one of each.
    write_heidelberg(in_tmp_dir, dataset, CLASSES[dataset], {"train": 6, "test": 1})
    args = ["fit", "--config", str(REPO / "configs" / f"{dataset}.yaml"), "--data.root", str(in_tmp_dir)]
    args += ["--model.time_steps", "4", "--data.batch_size", "16", "--data.num_workers", "0"]
    args += ["--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    args += ["--trainer.limit_val_batches", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    main(args)
    assert [path.name for path in in_tmp_dir.rglob("best.ckpt")] == ["best.ckpt"]
    (cache,) = (in_tmp_dir / "frames_cache").iterdir()
    assert cache.name.startswith(f"{dataset}-train-n_time_bins4-1x1-nodenoise-")


def test_shd_mlp_reads_the_700_channels_as_they_are():
    net = SPIKING_ARCHITECTURES["shd_mlp"](20, in_channels=700, time_steps=3)
    assert net.hidden[1].linear.in_features == 700
    assert net(torch.rand(3, 2, 700, 1, 1).round()).shape == (3, 2, 20)
    with pytest.raises(ConfigurationError, match="without conv layers needs spiking FC layers"):
        SpikingConvNet(20, features=(), hidden=(), in_channels=700)
