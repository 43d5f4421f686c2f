"""Run folders: fit → test → resume → another fit never overwrite, last.ckpt is the latest epoch, requeue, wandb runs, predict."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO
from helpers import QUICKSTART, SLURM_ONE_TASK
from helpers import SHORT_RUN as TINY
from lightning.pytorch.demos.boring_classes import BoringModel

from snn_lightning.callbacks import ModelCheckpoint
from snn_lightning.cli import SNNLightningCLI, main
from snn_lightning.errors import CheckpointError
from snn_lightning.runs import claim_version, newest_checkpoint


def run_cli(args, capsys):
    """Run the CLI in-process; return (exit code, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def epoch_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def test_fit_test_resume_and_a_second_fit_never_overwrite(in_tmp_dir, capsys):
    root = in_tmp_dir / "logs" / "quickstart"
    assert run_cli(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "2"], capsys)[0] == 0
    first = root / "version_0"
    assert {p.name for p in first.iterdir()} >= {"config.yaml", "run.json", "metrics.csv", "checkpoints"}
    assert os.readlink(root / "latest") == "version_0"

    code, err = run_cli(
        ["test", "--config", QUICKSTART, *TINY, "--ckpt_path", "best", "--model.eval_time_steps", "2"], capsys
    )
    assert code == 0, err[-2000:]
    assert f"--ckpt_path best: {first / 'checkpoints' / 'best.ckpt'}" in err
    assert "test/acc" in (first / "test_0" / "metrics.csv").read_text()
    assert "eval_time_steps: 2" in (first / "test_0" / "config.yaml").read_text()

    code, err = run_cli(
        ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "3", "--ckpt_path", "last"], capsys
    )
    assert code == 0, err[-2000:]
    assert epoch_of(first / "checkpoints" / "last.ckpt") == 2, "the resumed run continues in its own folder"
    assert not (root / "version_1").exists()

    kept = {path.name: digest(path) for path in (first / "checkpoints").glob("*.ckpt")}
    assert run_cli(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "1"], capsys)[0] == 0
    assert (root / "version_1" / "checkpoints" / "best.ckpt").is_file() and os.readlink(root / "latest") == "version_1"
    assert {path.name: digest(path) for path in (first / "checkpoints").glob("*.ckpt")} == kept, "version_0 untouched"


def test_a_resumed_fit_keeps_the_metrics_of_the_epochs_before_it(in_tmp_dir, capsys):
    metrics = in_tmp_dir / "logs" / "quickstart" / "version_0" / "metrics.csv"
    assert run_cli(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "2"], capsys)[0] == 0
    before = metrics.read_text().splitlines()
    assert {row.split(",")[0] for row in before[1:]} == {"0", "1"}
    code, err = run_cli(
        ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "3", "--ckpt_path", "last"], capsys
    )
    assert code == 0, err[-2000:]
    after = metrics.read_text().splitlines()
    assert after[: len(before)] == before, "the rows of epochs 0 and 1 are kept as they were"
    assert {row.split(",")[0] for row in after[len(before) :]} == {"2"}, "then only the resumed epoch's rows"


def test_default_root_dir_moves_every_output(in_tmp_dir, capsys):
    code, err = run_cli(
        ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "1", "--trainer.default_root_dir", "elsewhere"],
        capsys,
    )
    assert code == 0, err[-2000:]
    run = in_tmp_dir / "elsewhere" / "version_0"
    assert (
        (run / "checkpoints" / "last.ckpt").is_file()
        and (run / "metrics.csv").is_file()
        and (run / "config.yaml").is_file()
    )
    assert not (in_tmp_dir / "logs").exists()


def test_run_name_names_the_folder_and_is_never_reused(in_tmp_dir, capsys):
    args = ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "1", "--run_name", "lr0.1"]
    assert run_cli(args, capsys)[0] == 0
    folder = in_tmp_dir / "logs" / "quickstart" / "lr0.1"
    saved = digest(folder / "checkpoints" / "last.ckpt")
    code, err = run_cli(args, capsys)
    assert code == 2
    assert "run folder logs/quickstart/lr0.1 holds checkpoints of an earlier run; continue it with --ckpt_path" in err
    assert digest(folder / "checkpoints" / "last.ckpt") == saved


def test_last_checkpoint_is_every_epochs_end_even_when_the_metric_gets_worse(tmp_path):
    class Worsening(BoringModel):
        def on_validation_epoch_end(self):
            self.log("val/acc", 1.0 - 0.1 * self.current_epoch)

    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/acc", mode="max", save_last=True)
    trainer = L.Trainer(
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Worsening())
    assert epoch_of(tmp_path / "last.ckpt") == 3
    assert epoch_of(tmp_path / "best.ckpt") == 0


def test_a_failed_start_leaves_no_run_folder(in_tmp_dir, capsys):
    code, err = run_cli(
        ["fit", "--config", str(REPO / "configs" / "quickstart_fashion.yaml"), "--data.root", "missing"], capsys
    )
    assert code == 2 and "Fashion-MNIST" in err
    assert not (in_tmp_dir / "logs").exists()


def test_fast_dev_run_never_writes_into_a_run(in_tmp_dir, capsys):
    root = in_tmp_dir / "logs" / "quickstart"
    assert run_cli(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "1"], capsys)[0] == 0
    checkpoints = root / "version_0" / "checkpoints"
    before = {path.name: digest(path) for path in checkpoints.iterdir()}
    # In the same root, continuing the run, and with the ModelCheckpoint pointed into the run's folder.
    for where in (
        [],
        ["--ckpt_path", str(checkpoints / "last.ckpt")],
        ["--trainer.callbacks.dirpath", str(checkpoints)],
    ):
        code, err = run_cli(["fit", "--config", QUICKSTART, *TINY, "--trainer.fast_dev_run", "true", *where], capsys)
        assert code == 0, err
    assert {path.name: digest(path) for path in checkpoints.iterdir()} == before
    assert sorted(path.name for path in root.iterdir()) == ["latest", "version_0"]
    assert (root / "latest").resolve() == (root / "version_0").resolve()


def test_best_of_a_run_without_one_names_what_the_run_holds(tmp_path):
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"id": "abcd", "name": "quickstart/version_0"}))
    torch.save({"state_dict": {}, "callbacks": {}}, run / "checkpoints" / "last.ckpt")  # no ModelCheckpoint monitored
    with pytest.raises(
        CheckpointError, match=r"newest run .*version_0 has no best checkpoint \(its checkpoints/ holds last\.ckpt\)"
    ):
        newest_checkpoint(tmp_path, "best")


def test_version_claims_never_collide(tmp_path):
    claimed = [claim_version(tmp_path) for _ in range(3)]
    assert [path.name for path in claimed] == ["version_0", "version_1", "version_2"]


def test_best_is_the_checkpoint_recorded_in_last(in_tmp_dir, capsys):
    code, _ = run_cli(
        [
            "fit",
            "--config",
            QUICKSTART,
            *TINY,
            "--trainer.max_epochs",
            "2",
            "--trainer.callbacks.filename",
            "top-{epoch}",
        ],
        capsys,
    )
    assert code == 0
    found = newest_checkpoint(in_tmp_dir / "logs" / "quickstart", "best")
    assert found.parent.name == "checkpoints" and found.name.startswith("top-epoch=")


def test_predict_writes_one_row_per_sample(in_tmp_dir, capsys):
    assert run_cli(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "1"], capsys)[0] == 0
    code, err = run_cli(["predict", "--config", QUICKSTART, *TINY, "--ckpt_path", "last"], capsys)
    assert code == 0, err[-2000:]
    folder = in_tmp_dir / "logs" / "quickstart" / "version_0" / "predict_0"
    rows = (folder / "predictions.csv").read_text().splitlines()
    assert rows[0] == "index,prediction,target,probability" and len(rows) == 1 + 32  # one batch of 32
    saved = torch.load(folder / "predictions.pt", weights_only=True)
    assert saved["probabilities"].shape == (32, 10)
    assert torch.equal(saved["prediction"], saved["probabilities"].argmax(1))
    assert torch.equal(saved["index"], torch.arange(32))


def test_wandb_runs_of_fit_and_test_share_a_group_and_fit_keeps_its_id(in_tmp_dir, monkeypatch):
    monkeypatch.setattr(SNNLightningCLI, "_run_subcommand", lambda self, subcommand: None)  # instantiate only
    run = in_tmp_dir / "logs" / "quickstart" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"id": "abc123", "name": "quickstart/version_0"}))
    torch.save({"state_dict": {}}, run / "checkpoints" / "last.ckpt")
    wandb_logger = ["--trainer.logger", "lightning.pytorch.loggers.WandbLogger", "--trainer.logger.offline", "true"]

    def wandb_settings(*args):
        return SNNLightningCLI(args=[*args, "--config", QUICKSTART, *wandb_logger]).trainer.logger._wandb_init

    resumed = wandb_settings("fit", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))
    assert (resumed["id"], resumed["resume"], resumed["job_type"]) == ("abc123", "allow", "fit")
    assert resumed["group"] == "quickstart/version_0-abc123" and resumed["dir"] == str(run)
    tested = wandb_settings("test", "--ckpt_path", "last")
    assert tested["group"] == resumed["group"] and tested["job_type"] == "test" and tested.get("id") is None
    assert tested["name"] == "quickstart/version_0/test_0" and tested["dir"] == str(run / "test_0")
    new_run = wandb_settings("fit")
    assert new_run["id"] != "abc123" and new_run["name"] == "quickstart/version_1"


def test_requeued_slurm_job_resumes_its_run_and_wandb_id(tmp_path):
    env = {**os.environ, **SLURM_ONE_TASK, "WANDB_MODE": "offline"}
    env.pop("SLURM_RESTART_COUNT", None)
    command = [sys.executable, "-m", "snn_lightning.cli", "fit", "--config", QUICKSTART, *TINY]
    first = subprocess.run(
        command + ["--trainer.max_epochs", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "logs" / "quickstart" / "slurm_4242"
    identity = (run / "run.json").read_text()
    again = subprocess.run(
        command + ["--trainer.max_epochs", "2"],
        cwd=tmp_path,
        env={**env, "SLURM_RESTART_COUNT": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Restored all states from the checkpoint at logs/quickstart/slurm_4242/checkpoints/last.ckpt" in again.stderr
    assert epoch_of(run / "checkpoints" / "last.ckpt") == 1 and (run / "run.json").read_text() == identity
    not_requeued = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert not_requeued.returncode == 2 and "holds checkpoints of an earlier run" in not_requeued.stderr


def test_reduce_lr_on_plateau_watches_the_validation_metric(in_tmp_dir, capsys):
    code, err = run_cli(
        [
            "fit",
            "--config",
            QUICKSTART,
            *TINY,
            "--trainer.max_epochs",
            "2",
            "--model.lr_scheduler",
            "torch.optim.lr_scheduler.ReduceLROnPlateau",
            "--model.lr_scheduler.mode",
            "max",
            "--model.lr_scheduler.patience",
            "0",
        ],
        capsys,
    )
    assert code == 0, err[-2000:]
    saved = torch.load(in_tmp_dir / "logs/quickstart/version_0/checkpoints/last.ckpt", weights_only=False)
    assert saved["lr_schedulers"][0]["mode"] == "max"


def test_the_lr_finder_callback_sets_the_modules_learning_rate(in_tmp_dir):
    cli = SNNLightningCLI(
        args=[
            "fit",
            "--config",
            QUICKSTART,
            *TINY,
            "--trainer.max_epochs",
            "1",
            "--trainer.callbacks+=lightning.pytorch.callbacks.LearningRateFinder",
            "--trainer.callbacks.num_training_steps",
            "20",
            "--trainer.callbacks.min_lr",
            "1e-4",
            "--trainer.limit_train_batches",
            "20",
        ]
    )
    assert cli.model.lr != pytest.approx(0.1), "the finder's suggestion replaces the configured lr"
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] <= cli.model.lr, (
        "training ran at the suggestion (cosine from it)"
    )


def test_a_users_own_neuron_class_trains_and_tests(in_tmp_dir, capsys, monkeypatch):
    (in_tmp_dir / "myneuron.py").write_text(
        "from snn_lightning.neurons import LIF\n\nclass MyLIF(LIF):\n    '''LIF under another name.'''\n"
    )
    monkeypatch.syspath_prepend(str(in_tmp_dir))
    neuron = ["--model.neuron", "myneuron.MyLIF"]
    assert run_cli(["fit", "--config", QUICKSTART, *TINY, *neuron, "--trainer.max_epochs", "1"], capsys)[0] == 0
    code, err = run_cli(["test", "--config", QUICKSTART, *TINY, *neuron, "--ckpt_path", "last"], capsys)
    assert code == 0, err[-2000:]
    code, err = run_cli(["test", "--config", QUICKSTART, *TINY, "--ckpt_path", "last"], capsys)
    assert code == 2 and "pass --trusted_packages '[myneuron]'" in err
    code, err = run_cli(
        ["test", "--config", QUICKSTART, *TINY, "--ckpt_path", "last", "--trusted_packages", "[myneuron]"], capsys
    )
    assert code == 0, err[-2000:]


@pytest.mark.slow
def test_a_paper_config_survives_fit_test_resume_and_a_second_fit(in_tmp_dir, capsys, monkeypatch):
    from helpers import write_cifar

    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DIR": str(in_tmp_dir / "wandb_home"),
        "WANDB_CONFIG_DIR": str(in_tmp_dir / "wandb_home"),
        "WANDB_CACHE_DIR": str(in_tmp_dir / "wandb_home"),
    }.items():
        monkeypatch.setenv(name, value)
    write_cifar(in_tmp_dir / "cifar", "cifar100", per_file=8)
    config = str(REPO / "configs" / "staa_cifar100.yaml")
    small = [
        "--data.root",
        "cifar",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--data.pin_memory",
        "false",
        "--trainer.precision",
        "32",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--model.width_multiplier",
        "0.125",
        "--trainer.logger.log_model",
        "false",
        *TINY,
    ]
    root = in_tmp_dir / "logs" / "staa_cifar100"
    wandb = pytest.importorskip("wandb")

    def run_cli(args, capsys):  # each command in its own wandb session, as in its own process
        try:
            return globals()["run_cli"](args, capsys)
        finally:
            wandb.finish()

    assert run_cli(["fit", "--config", config, *small, "--trainer.max_epochs", "1"], capsys)[0] == 0
    code, err = run_cli(
        ["test", "--config", config, *small, "--ckpt_path", "best", "--model.eval_time_steps", "2"], capsys
    )
    assert code == 0, err[-2000:]
    code, err = run_cli(["fit", "--config", config, *small, "--trainer.max_epochs", "2", "--ckpt_path", "last"], capsys)
    assert code == 0, err[-2000:]
    assert epoch_of(root / "version_0" / "checkpoints" / "last.ckpt") == 1
    assert run_cli(["fit", "--config", config, *small, "--trainer.max_epochs", "1"], capsys)[0] == 0
    assert (root / "version_1" / "checkpoints" / "last.ckpt").is_file() and (
        root / "version_0" / "test_0" / "config.yaml"
    ).is_file()
    run_id = json.loads((root / "version_0" / "run.json").read_text())["id"]
    wandb_runs = list((root / "version_0" / "wandb").glob("offline-run-*"))
    assert wandb_runs and all(path.name.endswith(f"-{run_id}") for path in wandb_runs), (
        "fit and resume log to one wandb run"
    )
    assert list((root / "version_0" / "test_0" / "wandb").glob("offline-run-*")), (
        "the test has its own wandb run in the group"
    )
