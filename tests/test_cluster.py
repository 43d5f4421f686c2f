"""Cluster launchers: the SLURM script and overlay config, torchrun, and bf16 mixed precision on the CPU."""

import json
import os
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO
from helpers import TWO_BATCHES
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from snn_lightning.cli import SNNLightningCLI
from snn_lightning.modules.base import scale_lr_to_global_batch

SBATCH = REPO / "configs" / "slurm" / "train.sbatch"
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
# What SLURM sets in task 5 of `sbatch --nodes=2 --ntasks-per-node=4` (the second task on the second node).
SLURM_TASK = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "snn-lightning",
    "SLURM_NODELIST": "gpu[17-18]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NNODES": "2",
    "SLURM_NTASKS": "8",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
}


@pytest.fixture
def srun_command(tmp_path):
    """Run configs/slurm/train.sbatch with the SLURM variables and a stand-in `srun`; return the command it ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(
        f'#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open("{tmp_path}/srun.json", "w"))\n'
    )
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, **SLURM_TASK, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "BATCH_PER_DEVICE": "64"}
    result = subprocess.run(["bash", str(SBATCH)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / "srun.json").read_text())


def test_the_sbatch_script_passes_the_allocation_and_the_batch_and_leaves_the_lr_to_the_config(srun_command):
    command = " ".join(srun_command)
    assert srun_command[:2] == [".venv/bin/snn-lightning", "fit"]
    assert "--config configs/resnet19_cifar100.yaml --config configs/slurm/ddp.yaml" in command
    assert "--trainer.num_nodes 2 --trainer.devices 4 --data.batch_size 64" in command
    assert "lr" not in command  # the config's lr_reference_batch scales it (next test)


def test_the_slurm_command_runs_as_slurm_task_5_of_8(srun_command, monkeypatch, tmp_path):
    for name, value in SLURM_TASK.items():
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # Lightning sets them from the SLURM variables; restored afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(REPO)
    # Without the subcommand (run=False); the GPUs are simulated by CPU processes; logs go to a scratch folder.
    args = srun_command[2:] + [
        "--trainer.accelerator",
        "cpu",
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    cli = SNNLightningCLI(args=args, run=False)
    trainer, environment = cli.trainer, cli.trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert (environment.world_size(), environment.global_rank(), environment.local_rank(), environment.node_rank()) == (
        8,
        5,
        1,
        1,
    )
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size, trainer.global_rank) == (2, 4, 8, 5)
    assert environment.main_address == "gpu17" and environment.main_port == 15000 + 4242
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert cli.datamodule.batch_size == 64
    # The recipe's lr 0.1 is for 128 samples per step; this job steps 64 per GPU x 8 GPUs = 512: lr 0.4.
    assert cli.model.lr_reference_batch == 128
    optimizer = cli.model.optimizer_factory(cli.model.parameters())
    scale_lr_to_global_batch(
        optimizer,
        cli.model.lr_reference_batch,
        SimpleNamespace(
            datamodule=cli.datamodule,
            world_size=trainer.world_size,
            accumulate_grad_batches=trainer.accumulate_grad_batches,
        ),
    )
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.4)


def test_torchrun_variables_give_the_torchelastic_environment(monkeypatch, tmp_path):
    # What `torchrun --nnodes 2 --nproc-per-node 2 --node-rank 1 …` sets in its second process.
    for name, value in {
        "RANK": "3",
        "LOCAL_RANK": "1",
        "GROUP_RANK": "1",
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "29500",
        "TORCHELASTIC_RUN_ID": "snn",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    args = [
        "--config",
        QUICKSTART,
        "--trainer.strategy",
        "ddp",
        "--trainer.num_nodes",
        "2",
        "--trainer.devices",
        "2",
        "--trainer.logger",
        "false",
    ]
    trainer = SNNLightningCLI(args=args, run=False).trainer
    assert isinstance(trainer.strategy.cluster_environment, TorchElasticEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)


@pytest.mark.slow
def test_torchrun_trains_the_quickstart_with_two_cpu_processes(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "-m",
        "snn_lightning.cli",
        "fit",
        "--config",
        QUICKSTART,
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--model.width_multiplier",
        "0.25",
        *TWO_BATCHES,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr
    (run,) = (tmp_path / "logs" / "quickstart").glob("torchrun_*")  # both processes agreed on one run folder
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_bf16_mixed_precision_trains_the_quickstart_to_the_fp32_band(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = SNNLightningCLI(args=["--config", QUICKSTART, "--trainer.precision", "bf16-mixed"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (metrics,) = cli.trainer.test(ckpt_path="best", datamodule=cli.datamodule)
    assert metrics["test/acc"] >= 0.95
