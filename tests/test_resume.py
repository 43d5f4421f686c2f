"""Faults: a run killed mid-epoch (SIGTERM, SIGKILL) or requeued by SLURM resumes to the same weights; checkpoints are written atomically."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from conftest import REPO
from helpers import SLURM_ONE_TASK
from lightning.pytorch.trainer.states import TrainerFn

from snn_lightning.callbacks.safety import AtomicCheckpointIO
from snn_lightning.callbacks.slurm_requeue import SlurmRequeue

TESTS = Path(__file__).resolve().parent
# Lightning 2.6 rewrites `save_last` only when a monitored checkpoint improves, so a resumable run
# needs a checkpoint without monitor: it overwrites last.ckpt at every epoch end. (It replaces the
# quickstart's checkpoint, whose other settings jsonargparse would otherwise keep, hence monitor/save_last.)
EVERY_EPOCH = {
    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
    "init_args": {
        "dirpath": "logs/quickstart/checkpoints",
        "filename": "last",
        "monitor": None,
        "save_last": False,
        "enable_version_counter": False,
    },
}
# A small, fast variant of the quickstart: 2 epochs of 4 batches.
RUN = [
    "fit",
    "--config",
    str(REPO / "configs" / "quickstart.yaml"),
    "--model.width_multiplier",
    "0.25",
    "--trainer.max_epochs",
    "2",
    "--trainer.limit_train_batches",
    "4",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.deterministic",
    "true",
    "--trainer.enable_progress_bar",
    "false",
]


def callbacks(*extra):
    """Return the command-line setting of trainer.callbacks: the every-epoch checkpoint and ``extra``."""
    return ["--trainer.callbacks", json.dumps([EVERY_EPOCH, *extra])]


LAST = Path("logs/quickstart/checkpoints/last.ckpt")


class KillAt(L.Callback):
    """Send this process ``signal_name`` after training batch ``batch`` of epoch ``epoch`` (test helper)."""

    def __init__(self, epoch: int, batch: int, signal_name: str) -> None:
        """
        Args:
            epoch: epoch in which to send the signal.
            batch: batch index after which to send it.
            signal_name: SIGTERM, SIGKILL or SIGUSR1.
        """
        self.epoch, self.batch, self.signal_name = epoch, batch, signal_name

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), getattr(signal, self.signal_name))


def start_cli(args, cwd, variables=None):
    """Start `snn-lightning` in a subprocess in ``cwd`` with ``variables`` added to its environment (the tests
    directory importable, for KillAt)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.update(variables or {})
    command = [sys.executable, "-m", "snn_lightning.cli", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(processes):
    """Wait for ``processes`` (name -> Popen); return name -> (return code, stderr)."""
    return {name: (process.wait(timeout=900), process.communicate()[1]) for name, process in processes.items()}


def final_weights(folder, last=LAST):
    """Return the model weights of ``folder``'s checkpoint ``last`` and its global step."""
    checkpoint = torch.load(folder / last, map_location="cpu", weights_only=True)
    return checkpoint["state_dict"], checkpoint["global_step"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run, side by side: an uninterrupted run, and runs killed by SIGTERM / SIGKILL mid-epoch 1 then resumed.

    Returns name -> (folder, return code and stderr of the first process, of the resume).
    """
    folders = {name: tmp_path_factory.mktemp(name) for name in ("uninterrupted", "SIGTERM", "SIGKILL")}
    first = {"uninterrupted": start_cli(RUN + callbacks(), folders["uninterrupted"])}
    for name in ("SIGTERM", "SIGKILL"):
        kill = {"class_path": "test_resume.KillAt", "init_args": {"epoch": 1, "batch": 2, "signal_name": name}}
        first[name] = start_cli(RUN + callbacks(kill), folders[name])
    killed = finish(first)
    killed_checkpoints = {name: final_weights(folders[name])[1] for name in ("SIGTERM", "SIGKILL")}
    resumed = finish(
        {
            name: start_cli(RUN + callbacks() + ["--ckpt_path", str(LAST)], folders[name])
            for name in ("SIGTERM", "SIGKILL")
        }
    )
    return {name: (folders[name], killed[name], resumed.get(name), killed_checkpoints.get(name)) for name in folders}


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(signal_name, runs):
    reference_folder, (code, stderr), _, _ = runs["uninterrupted"]
    assert code == 0, stderr[-2000:]
    folder, (killed_code, killed_stderr), (resumed_code, resumed_stderr), killed_step = runs[signal_name]
    if signal_name == "SIGTERM":
        assert killed_code == 128 + signal.SIGTERM, killed_stderr[-2000:]
        assert "stopped by SIGTERM in epoch 1 (global step 7); resume with --ckpt_path" in killed_stderr
        assert str(LAST) in killed_stderr
    else:
        assert killed_code == -signal.SIGKILL, killed_stderr[-2000:]
    assert killed_step == 4, "the last checkpoint of the killed run is the one written at the end of epoch 0"
    assert resumed_code == 0, resumed_stderr[-2000:]
    assert_same_final_weights(folder, reference_folder)


def assert_same_final_weights(folder, reference_folder, last=LAST):
    """Assert that the checkpoints ``last`` of ``folder`` and ``reference_folder`` are at step 8 with equal weights."""
    weights, step = final_weights(folder, last)
    reference, reference_step = final_weights(reference_folder, last)
    assert step == reference_step == 8
    difference = max(
        (weights[key] - reference[key]).abs().max().item() for key in reference if reference[key].is_floating_point()
    )
    assert difference == 0.0, f"max |resumed - uninterrupted| = {difference}"


SLURM_LAST = Path("logs/quickstart/slurm_4242/checkpoints/last.ckpt")


@pytest.mark.slow
def test_a_slurm_job_requeued_by_its_signal_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path_factory):
    bin_dir = tmp_path_factory.mktemp("bin")
    # SLURM's answer to `scontrol requeue`: the job is stopped with SIGTERM, then started again.
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_CALLS"\nkill -TERM "$PPID"\n')
    scontrol.chmod(0o755)
    folders = {name: tmp_path_factory.mktemp(f"slurm-{name}") for name in ("uninterrupted", "requeued")}
    calls = folders["requeued"] / "scontrol_calls.txt"
    job = {**SLURM_ONE_TASK, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SCONTROL_CALLS": str(calls)}
    job.pop("SLURM_RESTART_COUNT", None)
    signal_after_batch_2 = [
        "--trainer.callbacks+=test_resume.KillAt",
        "--trainer.callbacks.epoch=1",
        "--trainer.callbacks.batch=2",
        "--trainer.callbacks.signal_name=SIGUSR1",
    ]
    first = finish(
        {
            "uninterrupted": start_cli(RUN, folders["uninterrupted"], job),
            "requeued": start_cli(RUN + signal_after_batch_2, folders["requeued"], job),
        }
    )
    assert first["uninterrupted"][0] == 0, first["uninterrupted"][1][-2000:]
    code, stderr = first["requeued"]
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    assert calls.read_text() == "requeue 4242\n"
    last = folders["requeued"] / SLURM_LAST
    requeue_line = (
        f"SIGUSR1: requeued SLURM job 4242; it resumes from {last} and runs epoch 1 again from its first batch"
    )
    assert requeue_line in stderr, stderr[-2000:]
    assert f"stopped by SIGTERM in epoch 1 (global step 7); the requeued job resumes from {last}" in stderr
    assert not list(folders["requeued"].rglob("hpc_ckpt_*.ckpt")), "no mid-epoch checkpoint is written"
    requeued = finish({"again": start_cli(RUN, folders["requeued"], {**job, "SLURM_RESTART_COUNT": "1"})})["again"]
    assert requeued[0] == 0, requeued[1][-2000:]
    assert f"Restored all states from the checkpoint at {SLURM_LAST}" in requeued[1]
    assert_same_final_weights(folders["requeued"], folders["uninterrupted"], SLURM_LAST)


@pytest.mark.parametrize(
    ("scontrol", "array", "said"),
    [
        (None, {}, "could not requeue SLURM job 4242 (no scontrol on PATH)"),
        (
            "exit 1",
            {"SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "3"},
            "could not requeue SLURM job 100_3 (scontrol requeue exited with 1)",
        ),
    ],
)
def test_a_requeue_that_fails_says_how_to_resume_by_hand(scontrol, array, said, tmp_path, monkeypatch, capsys):
    if scontrol is not None:
        (tmp_path / "scontrol").write_text(f"#!/bin/sh\n{scontrol}\n")
        (tmp_path / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in array.items():
        monkeypatch.setenv(name, value)
    requeue = SlurmRequeue()
    requeue._trainer = SimpleNamespace(
        is_global_zero=True, checkpoint_callbacks=[], state=SimpleNamespace(fn=TrainerFn.FITTING), current_epoch=3
    )
    requeue._requeue(signal.SIGUSR1, None)
    assert capsys.readouterr().err == f"SIGUSR1: {said}; no checkpoint was written yet\n"
    assert requeue.requeued


# The fast runs with one dataloader worker: static digits (1-pixel shifts) and the DVS quickstart
# (event frames, random translate/rotate/shear), both augmented inside the worker process.
WORKER_RUNS = {
    "static": [*RUN, "--data.init_args.num_workers", "1"],
    "event": [
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart_dvs.yaml"),
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "4",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.deterministic",
        "true",
        "--trainer.enable_progress_bar",
        "false",
        "--data.init_args.num_workers",
        "1",
    ],
}


def quickstart_dvs_frames(root: Path) -> Path:
    """Build the frame cache of the DVS quickstart's data under ``root``; return ``root``."""
    from snn_lightning.data import EventDataModule

    config = yaml.safe_load((REPO / "configs" / "quickstart_dvs.yaml").read_text())
    settings = config["data"]["init_args"] | {
        "root": str(root),
        "frames": config["model"]["init_args"]["time_steps"],
    }
    EventDataModule(**settings).prepare_data()
    return root


@pytest.mark.slow
@pytest.mark.parametrize("data", sorted(WORKER_RUNS))
def test_a_run_with_a_dataloader_worker_killed_mid_epoch_resumes_exactly(data, tmp_path_factory):
    run = WORKER_RUNS[data]
    if data == "event":  # both runs read one frame cache, built here once
        run = [*run, "--data.init_args.root", str(quickstart_dvs_frames(tmp_path_factory.mktemp("event-data")))]
    folders = {name: tmp_path_factory.mktemp(f"{data}-{name}") for name in ("uninterrupted", "SIGKILL")}
    kill = {"class_path": "test_resume.KillAt", "init_args": {"epoch": 1, "batch": 2, "signal_name": "SIGKILL"}}
    first = finish(
        {
            "uninterrupted": start_cli(run + callbacks(), folders["uninterrupted"]),
            "SIGKILL": start_cli(run + callbacks(kill), folders["SIGKILL"]),
        }
    )
    assert first["uninterrupted"][0] == 0, first["uninterrupted"][1][-2000:]
    assert first["SIGKILL"][0] == -signal.SIGKILL, first["SIGKILL"][1][-2000:]
    assert final_weights(folders["SIGKILL"])[1] == 4, (
        "the killed run's last checkpoint is the one of the end of epoch 0"
    )
    resumed = finish({"resume": start_cli(run + callbacks() + ["--ckpt_path", str(LAST)], folders["SIGKILL"])})
    assert resumed["resume"][0] == 0, resumed["resume"][1][-2000:]
    assert_same_final_weights(folders["SIGKILL"], folders["uninterrupted"])


def test_an_interrupted_checkpoint_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def killed_midway(obj, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [entry.name for entry in tmp_path.iterdir()] == ["last.ckpt"], "no temporary file is left behind"
    (tmp_path / ".last.ckpt.999.deadbeef.tmp").write_bytes(b"left by a SIGKILL while saving")
    io.save_checkpoint({"global_step": 3}, path)
    assert [entry.name for entry in tmp_path.iterdir()] == ["last.ckpt"], "the next save removes it"


def test_a_full_disk_while_saving_names_the_checkpoint_and_keeps_the_old_one(tmp_path, monkeypatch):
    from snn_lightning.errors import OutputDirError

    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)

    def disk_full(obj, file):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        OutputDirError, match="disk is full while writing checkpoint .*last.ckpt; the previous last.ckpt is intact"
    ):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1


def test_a_checkpoint_of_a_model_built_in_python_loads_with_weights_only(tmp_path):
    from snn_lightning.data import StaticImageDataModule
    from snn_lightning.modules import SNNClassifier
    from snn_lightning.neurons import PLIF

    model = SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, width_multiplier=0.25, neuron=PLIF())
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=StaticImageDataModule(batch_size=8))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert "neuron" not in torch.load(tmp_path / "model.ckpt", weights_only=True)["hyper_parameters"]
    loaded = SNNClassifier.load_from_checkpoint(tmp_path / "model.ckpt", neuron=PLIF(), weights_only=True)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


class _RandomSamples(torch.utils.data.Dataset):
    """Eight samples of ``torch.rand`` drawn when read: an augmentation run in the worker process."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return index, torch.rand(())


def test_an_epoch_seeded_loader_with_a_worker_repeats_its_batches_for_the_same_seed():
    from snn_lightning.data.loaders import EpochSeededLoader

    seed = [1]
    loader = EpochSeededLoader(_RandomSamples(), batch_size=4, shuffle=True, num_workers=1, epoch_seed=lambda: seed[0])
    first, again = list(loader), list(loader)
    seed[0] = 2
    other = list(loader)
    for (indices, draws), (indices_again, draws_again) in zip(first, again):
        assert torch.equal(indices, indices_again) and torch.equal(draws, draws_again)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other)), "another seed draws other augmentations"
    with pytest.raises(ValueError, match="set persistent_workers=False"):
        EpochSeededLoader(_RandomSamples(), num_workers=1, persistent_workers=True, epoch_seed=lambda: 1)
