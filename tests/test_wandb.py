"""Experiment tracking: an offline wandb run gets the resolved config, the metrics, the firing-rate table and the plots."""

import json
import os
import struct

import lightning as L
import pytest
import yaml
from conftest import REPO

from snn_lightning.callbacks import LoggerSaveConfigCallback
from snn_lightning.cli import SNNLightningCLI, main

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


@pytest.fixture
def no_wandb_key(tmp_path, monkeypatch):
    """No wandb API key anywhere (variable, netrc) and no WANDB_MODE; wandb's folders in ``tmp_path``."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.setenv(name, "set")  # recorded, so the test's own WANDB_MODE=offline is undone too
        monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def wandb_quickstart(folder):
    """Write the quickstart config with an online WandbLogger into ``folder``; return its path."""
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "snn-lightning-tests", "log_model": True},
    }
    path = folder / "wandb.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_without_an_api_key_wandb_logs_offline_and_says_so(no_wandb_key, in_tmp_dir, capsys):
    SNNLightningCLI(args=["--config", wandb_quickstart(in_tmp_dir)], run=False)
    assert os.environ["WANDB_MODE"] == "offline"
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "wandb" in line]
    assert "no API key" in line and "logging offline" in line and "wandb sync" in line


@pytest.mark.parametrize("where", ["variable", "netrc", "mode"])
def test_a_known_key_or_a_chosen_mode_is_left_alone(where, no_wandb_key, in_tmp_dir, monkeypatch, capsys):
    if where == "variable":
        monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    elif where == "netrc":
        netrc = no_wandb_key / "netrc"
        netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {'0' * 40}\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
    else:
        monkeypatch.setenv("WANDB_MODE", "disabled")
    SNNLightningCLI(args=["--config", wandb_quickstart(in_tmp_dir)], run=False)
    assert os.environ.get("WANDB_MODE") == ("disabled" if where == "mode" else None)
    assert "logging offline" not in capsys.readouterr().err


def test_missing_data_is_reported_before_wandb_starts(no_wandb_key, in_tmp_dir, capsys):
    missing = in_tmp_dir / "no-cifar"
    args = ["fit", "--config", str(REPO / "configs" / "resnet19_cifar100.yaml"), "--data.root", str(missing)]
    args += ["--data.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.precision", "32"]
    args += ["--model.width_multiplier", "0.0625", "--trainer.default_root_dir", str(in_tmp_dir / "logs")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "CIFAR-100 not found" in line and "Traceback" not in err and "UsageError" not in err
    assert "logging offline" in err
    assert not list(in_tmp_dir.rglob("*run-*")), "a run that fails before training leaves no wandb run behind"


def test_a_fit_finishes_its_wandb_run_without_colour_codes_or_the_anonymous_warning(
    offline_wandb, in_tmp_dir, monkeypatch, capfd
):
    monkeypatch.delenv("WANDB_SILENT")
    wandb_logger = ["--trainer.logger", "lightning.pytorch.loggers.WandbLogger", "--trainer.logger.offline", "true"]
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches", "1"]
    main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), *wandb_logger, *short])
    output = "".join(capfd.readouterr())
    assert wandb.run is None and "wandb sync" in output
    assert "\x1b[" not in output and "anonymous" not in output
