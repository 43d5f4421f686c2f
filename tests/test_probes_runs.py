"""Probes of run folders (issue 27): a refused resume writes nothing, a run name is one fit's at a time, a copied run resumes into its own files."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import QUICKSTART
from helpers import SHORT_RUN as TINY

from snn_lightning.cli import main
from snn_lightning.runs import newest_checkpoint

TESTS = Path(__file__).resolve().parent
# The files of a run folder that record it: a refused command must leave each as it was.
RECORD = ("config.yaml", "hparams.yaml", "metrics.csv", "run.json")


def run_cli(args, capsys):
    """Run the CLI in-process; return (exit code, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def record_of(run: Path) -> dict[str, str]:
    """Return the digest of each record file of ``run`` (None for a missing one)."""
    return {
        name: hashlib.sha256((run / name).read_bytes()).hexdigest() if (run / name).is_file() else None
        for name in RECORD
    }


def epoch_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


@pytest.fixture
def trained(in_tmp_dir, capsys):
    """Return the folder of a run trained 2 epochs in the working folder."""
    code, err = run_cli(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "2"], capsys)
    assert code == 0, err[-2000:]
    return in_tmp_dir / "logs" / "quickstart" / "version_0"


@pytest.mark.parametrize("max_epochs", ["2", "1"])
def test_resuming_a_finished_run_is_refused_and_keeps_its_record(trained, capsys, max_epochs):
    kept = record_of(trained)
    assert all(kept.values())
    code, err = run_cli(
        ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", max_epochs, "--ckpt_path", "last"], capsys
    )
    assert code == 2, err[-2000:]
    assert f"run {trained} already trained 2 epochs and --trainer.max_epochs is {max_epochs}; raise" in err
    assert "Traceback" not in err
    assert record_of(trained) == kept, "metrics.csv, config.yaml and hparams.yaml are left as they were"


def test_a_resume_of_another_width_is_refused_before_the_record_is_rewritten(trained, capsys):
    kept = record_of(trained)
    args = ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "3", "--ckpt_path", "last"]
    code, err = run_cli([*args, "--model.width_multiplier", "0.5"], capsys)
    assert code == 2, err[-2000:]
    assert "does not fit the configured model: 31 tensors differ in shape" in err
    assert record_of(trained) == kept
    assert "width_multiplier: 0.25" in (trained / "config.yaml").read_text()
    code, err = run_cli(args, capsys)
    assert code == 0, err[-2000:]
    assert epoch_of(trained / "checkpoints" / "last.ckpt") == 2


class WaitForFile(L.Callback):
    """At the start of training, create ``started`` and wait until ``release`` exists (test helper)."""

    def __init__(self, started: str, release: str) -> None:
        """
        Args:
            started: file created when training starts.
            release: file whose appearance lets training go on.
        """
        self.started, self.release = Path(started), Path(release)

    def on_train_start(self, trainer, pl_module) -> None:
        self.started.touch()
        deadline = time.monotonic() + 600
        while not self.release.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def test_a_run_name_in_use_by_a_running_fit_is_refused_and_its_run_resumes_later(in_tmp_dir, capsys):
    started, release = in_tmp_dir / "started", in_tmp_dir / "release"
    checkpoint = {
        "class_path": "snn_lightning.callbacks.ModelCheckpoint",
        "init_args": {"filename": "best", "monitor": "val/acc", "mode": "max", "save_last": True},
    }
    wait = {
        "class_path": "test_probes_runs.WaitForFile",
        "init_args": {"started": str(started), "release": str(release)},
    }
    args = ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs", "1", "--run_name", "lr0.1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen(
        [sys.executable, "-m", "snn_lightning.cli", *args, "--trainer.callbacks", json.dumps([checkpoint, wait])],
        cwd=in_tmp_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not started.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started.exists(), first.communicate()[1][-2000:]
        folder = in_tmp_dir / "logs" / "quickstart" / "lr0.1"
        kept = record_of(folder)
        code, err = run_cli(args, capsys)
        assert code == 2, err[-2000:]
        assert "run folder logs/quickstart/lr0.1 is already in use by another fit; pick another --run_name" in err
        assert record_of(folder) == kept and folder.is_dir(), "the running fit's folder is left alone"
    finally:
        release.touch()
        _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err[-2000:]
    assert "lr0.1" in (folder / "config.yaml").read_text()
    resume = ["--trainer.max_epochs", "2", "--ckpt_path", str(folder / "checkpoints" / "last.ckpt")]
    code, err = run_cli([*args[:-4], *resume], capsys)
    assert code == 0, err[-2000:]
    assert epoch_of(folder / "checkpoints" / "last.ckpt") == 1


def test_a_copied_run_resumes_into_its_own_best_and_last(trained, capsys):
    copy = trained.parent.parent.parent / "elsewhere" / "version_0"
    shutil.copytree(trained, copy, symlinks=True)
    code, err = run_cli(
        [
            "fit",
            "--config",
            QUICKSTART,
            *TINY,
            "--trainer.max_epochs",
            "4",
            "--ckpt_path",
            str(copy / "checkpoints" / "last.ckpt"),
        ],
        capsys,
    )
    assert code == 0, err[-2000:]
    assert sorted(path.name for path in (copy / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert epoch_of(copy / "checkpoints" / "last.ckpt") == 3
    assert newest_checkpoint(copy.parent, "last") == copy / "checkpoints" / "last.ckpt"
    assert newest_checkpoint(copy.parent, "best") == copy / "checkpoints" / "best.ckpt"
    assert epoch_of(trained / "checkpoints" / "last.ckpt") == 1, "the original run is untouched"


def test_last_is_the_furthest_trained_of_last_and_a_last_v1_beside_it(trained):
    checkpoints = trained / "checkpoints"
    further = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    further["global_step"] += 10
    torch.save(further, checkpoints / "last-v1.ckpt")
    os.utime(checkpoints / "last.ckpt")  # written after last-v1 (a copy), yet less trained
    assert newest_checkpoint(trained.parent, "last") == checkpoints / "last-v1.ckpt"
