"""The `snn-lightning` command: help, every config parses and instantiates, links, clean errors."""

import ast
import os
import subprocess
import sys
from importlib.metadata import version

import pytest
import yaml
from conftest import CONFIGS, REPO
from helpers import cli_modes, run_main, write_image_folder, write_nmnist

from snn_lightning.cli import SNNLightningCLI, main
from snn_lightning.data import EventDataModule, StaticImageDataModule
from snn_lightning.modules import ANNClassifier, SNNClassifier

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")


def test_help_lists_the_subcommands(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for subcommand in ("fit", "validate", "test", "predict"):
        assert subcommand in out


def test_help_lists_export_too(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    text = " ".join(out.split())  # help is wrapped to the terminal width
    assert "export Write a trained checkpoint as a NIR graph" in text


def test_version_prints_the_installed_version(capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"snn-lightning {version('snn-lightning')}"


def test_nothing_outside_the_cli_imports_it():
    package = REPO / "snn_lightning"
    importers = []
    for path in package.rglob("*.py"):
        if package / "cli" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "snn_lightning.cli" or name.startswith("snn_lightning.cli.") for name in names):
                importers.append(path.relative_to(REPO))
    assert importers == []


def test_model_help_shows_argument_docs(capsys):
    code, out, _ = run_main(["fit", "--model.help", "snn_lightning.modules.SNNClassifier"], capsys)
    assert code == 0
    text = " ".join(out.split())  # help is wrapped to the terminal width
    assert "simulation steps T the network is built and trained with" in text
    assert "--model.eval_time_steps EVAL_TIME_STEPS" in text
    assert "--model.loss {mean_ce,per_step_ce}" in text


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "snn-lightning")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "fit" in result.stdout


def test_configs_exist():
    names = {path.name for path in CONFIGS}
    assert {"quickstart.yaml", "resnet19_cifar100.yaml", "ann_resnet34_cifar100.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_every_config_prints_its_resolved_form(config, capsys, in_tmp_dir):
    code, out, _ = run_main(["fit", "--config", str(config), "--print_config"], capsys)
    assert code == 0
    resolved = yaml.safe_load(out)
    assert resolved["model"]["class_path"].startswith("snn_lightning.modules.")
    assert resolved["data"]["class_path"].startswith("snn_lightning.data.")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_every_config_instantiates_without_touching_data(config, in_tmp_dir, tmp_path_factory):
    args = ["--config", str(config), "--trainer.logger", "false"]
    if config.name == "image_folder.yaml":  # lists the class folders and opens one image for its classes and channels
        images = tmp_path_factory.mktemp("images")
        for split in ("train", "val"):
            write_image_folder(images / split, {"cat": 1, "dog": 1})
        args += ["--data.root", str(images)]
    cli = SNNLightningCLI(args=args, run=False, **cli_modes())
    data, model = cli.datamodule, cli.model
    assert isinstance(data, (StaticImageDataModule, EventDataModule))
    assert isinstance(model, (SNNClassifier, ANNClassifier))
    assert model.num_classes == data.num_classes
    assert model.hparams.in_channels == data.in_channels
    if isinstance(data, EventDataModule):  # binned into the model's time steps, not a number of its own
        assert data.frames is None and model.time_steps >= 1
    assert list(in_tmp_dir.iterdir()) == [], "instantiating a config must not create files"


def test_data_classes_and_channels_are_linked_into_the_model(in_tmp_dir):
    cli = SNNLightningCLI(args=["--config", QUICKSTART, "--trainer.logger", "false"], run=False, **cli_modes())
    assert cli.model.num_classes == 10 and cli.model.hparams.in_channels == 1
    assert cli.model.network.fc.out_features == 10


def test_model_time_steps_reach_the_network_and_eval_time_steps_the_evaluation(in_tmp_dir):
    args = ["--config", QUICKSTART, "--model.time_steps", "2", "--model.eval_time_steps", "1"]
    cli = SNNLightningCLI(args=[*args, "--trainer.logger", "false"], run=False, **cli_modes())
    assert cli.model.time_steps == cli.model.network.time_steps == 2
    assert cli.model.eval().active_time_steps == 1 and cli.model.train().active_time_steps == 2


def test_fast_dev_run_of_the_quickstart_trains_two_steps(in_tmp_dir):
    cli = SNNLightningCLI(args=["fit", "--config", QUICKSTART, "--trainer.fast_dev_run", "2"], **cli_modes())
    assert cli.trainer.global_step == 2
    assert 0.0 < cli.trainer.callback_metrics["train/loss_epoch"].item() < 10.0
    assert "val/acc" in cli.trainer.callback_metrics


def test_missing_dataset_gives_one_clear_message_and_exit_code_2(capsys, in_tmp_dir):
    missing = in_tmp_dir / "nowhere"
    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "resnet19_cifar100.yaml"),
        "--data.root",
        str(missing),
        "--data.num_workers",
        "0",
        "--trainer.accelerator",
        "cpu",
        "--trainer.precision",
        "32",
        "--trainer.logger",
        "false",
        "--model.width_multiplier",
        "0.0625",
    ]
    code, _, err = run_main(args, capsys)
    assert code == 2
    assert "CIFAR-100 not found" in err and str(missing) in err and "download: true" in err
    assert "Traceback" not in err
    assert not missing.exists()


def test_fashion_quickstart_without_the_data_names_both_ways_to_get_it(capsys, in_tmp_dir):
    missing = in_tmp_dir / "no-fashion"
    args = ["fit", "--config", str(REPO / "configs" / "quickstart_fashion.yaml"), "--data.root", str(missing)]
    code, _, err = run_main(args, capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Fashion-MNIST not found" in line and str(missing) in line
    assert "download: true" in line and "apt-get install dataset-fashion-mnist" in line


def test_bad_time_steps_is_a_clear_error(capsys, in_tmp_dir):
    code, _, err = run_main(["fit", "--config", QUICKSTART, "--model.time_steps", "0"], capsys)
    assert code == 2
    assert "model.time_steps must be >= 1, got 0; set e.g. --model.time_steps 4" in err
    assert "Traceback" not in err


def test_event_checkpoint_tested_at_fewer_steps_runs_its_first_trained_frames(in_tmp_dir, capsys):
    write_nmnist(in_tmp_dir, {"Train": 9, "Test": 6})
    common = ["--config", str(REPO / "configs" / "quickstart_dvs.yaml"), "--data.dataset", "nmnist"]
    common += ["--data.root", str(in_tmp_dir), "--data.val_fraction", "0", "--data.num_workers", "0"]
    common += ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    test = ["test", *common, "--ckpt_path", "best", "--trainer.callbacks+=snn_lightning.callbacks.PerStepAccuracy"]
    full = main_metrics(test)
    fewer = main_metrics([*test, "--model.eval_time_steps", "2"])
    assert fewer["test/acc"] == full["test/acc_t2"] and fewer["test/acc_t2"] == full["test/acc_t2"]
    assert "test/acc_t3" in full and "test/acc_t3" not in fewer
    # The data binned the recordings into the checkpoint's 3 frames both times: no 2-frame cache was built.
    caches = sorted(path.name.split("-")[1:3] for path in (in_tmp_dir / "frames_cache").iterdir())
    assert caches == [["test", "n_time_bins3"], ["train", "n_time_bins3"]]
    code, _, err = run_main([*test, "--model.time_steps", "2"], capsys)
    assert code == 2 and "was trained with time_steps=3" in err and "--model.eval_time_steps 2" in err


def main_metrics(args: list[str]) -> dict[str, float]:
    """Return the metrics of the run the CLI makes of ``args`` (subcommand first)."""
    cli = SNNLightningCLI(args=args, **cli_modes())
    return {name: float(value) for name, value in cli.trainer.callback_metrics.items()}


@pytest.mark.slow
def test_quickstart_reaches_95_percent_test_accuracy(in_tmp_dir):
    cli = SNNLightningCLI(args=["--config", QUICKSTART], run=False, **cli_modes())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (metrics,) = cli.trainer.test(ckpt_path="best", datamodule=cli.datamodule)
    assert metrics["test/acc"] >= 0.95


def test_given_settings_follow_a_config_key_to_its_base_file():
    from snn_lightning.cli.settings import GivenSettings

    delta = REPO / "configs" / "kd_resnet19_cifar100.yaml"
    given = GivenSettings.read(["fit", "--config", str(delta), "--model.init_args.time_steps", "2"])
    assert given.explicit["data.dataset"] == "cifar100"  # set only in configs/base/kd_resnet19_cifar100.yaml
    assert given.explicit["trainer.default_root_dir"] == "logs/kd_resnet19_cifar100"  # the delta's own
    assert given.explicit["model.time_steps"] == "2" and given.command_line == {"model.time_steps": "2"}
    assert "config" not in given.explicit


def test_the_sweep_command_parses_with_the_arguments_wandb_appends(capsys, in_tmp_dir):
    sweep = yaml.safe_load((REPO / "configs" / "sweeps" / "quickstart.yaml").read_text())
    command = sweep["command"]
    assert command[:3] == ["${env}", "snn-lightning", "fit"] and command[-1] == "${args}"
    # One trial as wandb's agent runs it: ${args} becomes one --<parameter>=<value> per swept parameter.
    trial = {
        "model.optimizer.init_args.lr": 0.05,
        "model.optimizer.init_args.weight_decay": 0.005,
        "model.time_steps": 2,
    }
    assert set(trial) == set(sweep["parameters"])
    fixed = [argument.replace("configs/", f"{REPO / 'configs'}/") for argument in command[2:-1]]
    code, out, _ = run_main([*fixed, *(f"--{key}={value}" for key, value in trial.items()), "--print_config"], capsys)
    assert code == 0
    resolved = yaml.safe_load(out)
    optimizer = resolved["model"]["init_args"]["optimizer"]["init_args"]
    assert (optimizer["lr"], optimizer["weight_decay"], resolved["model"]["init_args"]["time_steps"]) == (
        0.05,
        0.005,
        2,
    )
    assert resolved["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert resolved["trainer"]["logger"]["init_args"]["project"] == "snn-lightning-sweeps"
    assert resolved["trainer"]["max_epochs"] == 15


def test_a_config_names_classes_of_modules_in_the_working_folder(capsys, in_tmp_dir, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() appends the working folder; undone after the test
    (in_tmp_dir / "mylab").mkdir()
    (in_tmp_dir / "mylab" / "__init__.py").write_text("")
    (in_tmp_dir / "mylab" / "optim.py").write_text("import torch\n\n\nclass MySGD(torch.optim.SGD):\n    pass\n")
    code, out, err = run_main(
        ["fit", "--config", QUICKSTART, "--model.optimizer", "mylab.optim.MySGD", "--print_config"], capsys
    )
    assert code == 0, err
    assert yaml.safe_load(out)["model"]["init_args"]["optimizer"]["class_path"] == "mylab.optim.MySGD"
    assert sys.path[-1] == str(in_tmp_dir), "the working folder goes last: installed packages win"
