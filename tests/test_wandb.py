"""Experiment tracking: an offline wandb run gets the resolved config, the metrics, the firing-rate table and the plots."""

import json
import struct

import lightning as L
import pytest
import yaml
from conftest import REPO

from snn_lightning.callbacks import LoggerSaveConfigCallback
from snn_lightning.cli import SNNLightningCLI

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

CALLBACKS = ["SpikeStats", "EnergyEstimate", "PerStepAccuracy", "PlotCallback"]


def read_wandb_records(path):
    """Return the protobuf records of a ``run-*.wandb`` file (LevelDB log format after a 7-byte W&B header)."""
    data, block, position, pending, records = path.read_bytes(), 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def logged(records):
    """Return (config, history keys) of the records; config values are decoded from JSON."""
    config, history = {}, set()
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            # Media (images, tables) are logged as nested keys: [name, field].
            history.update(item.key or item.nested_key[0] for item in record.history.item)
    return config, history


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}.items():
        monkeypatch.setenv(name, value)
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    yield tmp_path / "runs"
    wandb.finish()
    wandb.teardown()  # flushes the offline run file


@pytest.mark.slow
def test_offline_run_records_config_metrics_table_and_plots(offline_wandb, in_tmp_dir):
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["trainer"].update(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        limit_test_batches=1,
        enable_progress_bar=False,
        logger={
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {"save_dir": str(offline_wandb), "offline": True, "project": "snn-lightning-tests"},
        },
        callbacks=[{"class_path": f"snn_lightning.callbacks.{name}"} for name in CALLBACKS],
    )
    config["model"]["init_args"]["width_multiplier"] = 0.25
    (in_tmp_dir / "run.yaml").write_text(yaml.safe_dump(config))
    cli = SNNLightningCLI(
        args=["fit", "--config", "run.yaml"],
        save_config_callback=LoggerSaveConfigCallback,
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
    )
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    wandb.finish()
    wandb.teardown()

    (run_file,) = offline_wandb.glob("wandb/offline-run-*/run-*.wandb")
    config_logged, history = logged(read_wandb_records(run_file))
    assert config_logged["model"]["class_path"] == "snn_lightning.modules.SNNClassifier"
    assert config_logged["model"]["init_args"]["width_multiplier"] == 0.25
    assert config_logged["trainer"]["max_epochs"] == 1 and config_logged["data"]["init_args"]["dataset"] == "digits"
    assert config_logged["model/parameters"] > 0 and config_logged["model/macs_per_step"] > 0
    expected = {"val/acc", "val/firing_rate", "val/acc_t1", "val/acc_t4", "val/firing_rate_table", "val/plots/raster"}
    expected |= {"test/acc", "test/energy_mj", "test/sops", "test/ann_energy_mj", "test/acc_t4", "test/plots/membrane"}
    assert expected <= history
    media = run_file.parent / "files" / "media"
    assert any((media / "images").rglob("*.png")) and any((media / "table").rglob("*.table.json"))
