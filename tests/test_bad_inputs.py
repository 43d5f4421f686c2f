"""Mistakes a user can make: each gives one `error:` line naming the thing and the fix, exit status 2, no traceback."""

import os
import pickle
import re
import shutil
import subprocess
import sys
from collections import namedtuple

import lightning as L
import pytest
import torch
from conftest import REPO
from helpers import ONE_BATCH_FIT as TINY
from helpers import QUICKSTART, TouchesMarker, run_main, write_cifar
from torch import nn

from snn_lightning.callbacks.safety import NaNGuard
from snn_lightning.cli import SNNLightningCLI
from snn_lightning.errors import ConfigurationError, NonFiniteLossError
from snn_lightning.models import ANN_ARCHITECTURES, spiking_resnet20

KD = str(REPO / "configs" / "quickstart_kd.yaml")
DVS = str(REPO / "configs" / "quickstart_dvs.yaml")
CIFAR = ["--data.dataset", "cifar10", "--model.width_multiplier", "0.25"]


class Pickled:
    """An object whose unpickling would run code (``print``): what weights_only loading must refuse."""

    def __reduce__(self):
        return print, ("this ran while loading",)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Write the broken inputs once: configs, checkpoints, teacher files, data folders."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "broken.yaml").write_text("trainer:\n  max_epochs: 3\n  devices: [1\nmodel: {\n")
    (folder / "empty.yaml").write_text("# settings go here\n")
    (folder / "typo.yaml").write_text("model:\n  init_args:\n    time_step: 2\n")
    (folder / "a_file").write_text("not a folder")
    (folder / "corrupt.ckpt").write_bytes(b"PK\x03\x04 a truncated zip")
    torch.save({"state_dict": {}, "hyper_parameters": {"note": Pickled()}}, folder / "pickled.ckpt")
    # Plain strings only (loads with weights_only), but naming a class the CLI would import from an unknown module.
    foreign = {
        "_class_path": "snn_lightning.modules.SNNClassifier",
        "neuron": {"class_path": "not_installed_payload.Neuron"},
    }
    torch.save({"state_dict": {}, "hyper_parameters": foreign}, folder / "foreign_class.ckpt")
    for name, classes in (("teacher.pt", 10), ("teacher_5_classes.pt", 5)):
        torch.save(
            ANN_ARCHITECTURES["resnet18"](num_classes=classes, in_channels=1, stem="cifar").state_dict(), folder / name
        )
    torch.save({"conv1.weight": Pickled()}, folder / "teacher_pickled.pt")
    (folder / "imagenet" / "train").mkdir(parents=True)
    for name in ("cifar_truncated", "cifar_pickled"):
        write_cifar(folder / name, "cifar10", 4)
    batch = folder / "cifar_truncated" / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:500])
    (folder / "cifar_pickled" / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        pickle.dumps({"data": TouchesMarker(folder / "marker")}, protocol=4)
    )
    return folder


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """The last.ckpt of a one-batch quickstart run at width 0.25 (written through the CLI)."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        SNNLightningCLI(args=["fit", "--config", QUICKSTART, *TINY])
    return folder / "logs" / "quickstart" / "latest" / "checkpoints" / "last.ckpt"


# (case, arguments with {files}/{checkpoint} placeholders, fragments the error line must contain)
CASES = [
    (
        "config file missing",
        ["fit", "--config", "{files}/nowhere.yaml"],
        ["config file", "nowhere.yaml does not exist; check the path"],
    ),
    (
        "malformed YAML",
        ["fit", "--config", "{files}/broken.yaml"],
        ["broken.yaml is not valid YAML at line 4, column 6", "started at line 3, column 12", "fix the syntax"],
    ),
    (
        "config file empty",
        ["fit", "--config", "{files}/empty.yaml"],
        ["config file", "empty.yaml is empty (no settings)", "or drop that --config"],
    ),
    (
        "unknown key on the command line",
        ["fit", "--config", QUICKSTART, "--trainer.max_epohcs", "3"],
        ["unknown setting trainer.max_epohcs (did you mean trainer.max_epochs?)", "snn-lightning fit --help"],
    ),
    (
        "unknown key in a config file",
        ["fit", "--config", QUICKSTART, "--config", "{files}/typo.yaml"],
        [
            "model.init_args.time_step is not an argument of snn_lightning.modules.SNNClassifier (did you mean time_steps?)"
        ],
    ),
    (
        "wrong type",
        ["fit", "--config", QUICKSTART, "--data.batch_size", "many"],
        ["data.init_args.batch_size must be int, got 'many'"],
    ),
    (
        "value outside the choices",
        ["fit", "--config", QUICKSTART, "--model.arch", "resnet91"],
        ["model.init_args.arch must be one of resnet_mini, resnet19", "got 'resnet91' (did you mean resnet19?)"],
    ),
    (
        "unknown subcommand",
        ["fitt", "--config", QUICKSTART],
        ["unknown subcommand 'fitt' (did you mean fit?); choose from fit, validate, test, predict"],
    ),
    (
        "time steps given to the data, which take the model's",
        ["fit", "--config", QUICKSTART, "--data.time_steps", "3"],
        ["data.init_args.time_steps is not an argument of snn_lightning.data.StaticImageDataModule"],
    ),
    (
        "class count given against the data's",
        ["fit", "--config", QUICKSTART, "--model.num_classes", "100"],
        [
            "model.num_classes is 100 but the data module (StaticImageDataModule) has num_classes = 10",
            "drop model.num_classes",
        ],
    ),
    (
        "input channels given against the data's",
        ["fit", "--config", QUICKSTART, "--model.in_channels", "3"],
        ["model.in_channels is 3 but the data module (StaticImageDataModule) has in_channels = 1"],
    ),
    (
        "dataset folder with the wrong layout",
        [
            "fit",
            "--config",
            QUICKSTART,
            "--data.dataset",
            "imagenet",
            "--data.root",
            "{files}/imagenet",
            "--model.width_multiplier",
            "0.05",
        ],
        ["ImageNet not found", "imagenet/train is not a folder of class folders"],
    ),
    (
        "teacher checkpoint missing",
        ["fit", "--config", KD, "--model.teacher_checkpoint", "{files}/no_teacher.pt"],
        ["teacher checkpoint", "no_teacher.pt does not exist"],
    ),
    (
        "teacher checkpoint corrupt",
        ["fit", "--config", KD, "--model.teacher_checkpoint", "{files}/corrupt.ckpt"],
        ["teacher checkpoint", "corrupt.ckpt is not a PyTorch checkpoint that loads with weights_only=True"],
    ),
    (
        "teacher checkpoint holding a pickled object",
        ["fit", "--config", KD, "--model.teacher_checkpoint", "{files}/teacher_pickled.pt"],
        ["teacher_pickled.pt is not a PyTorch checkpoint that loads with weights_only=True"],
    ),
    (
        "teacher of another architecture",
        ["fit", "--config", KD, "--model.teacher_checkpoint", "{files}/teacher.pt", "--model.teacher_arch", "resnet34"],
        ["does not fit an ANN resnet34", "set model.init_args.teacher_arch: resnet18"],
    ),
    (
        "teacher with another class count",
        ["fit", "--config", KD, "--model.teacher_checkpoint", "{files}/teacher_5_classes.pt"],
        ["has 5 classes but the data module has 10"],
    ),
    (
        "resume checkpoint missing",
        ["fit", "--config", QUICKSTART, "--ckpt_path", "{files}/gone.ckpt"],
        ["checkpoint", "gone.ckpt does not exist; give the path of a .ckpt file"],
    ),
    (
        "resume checkpoint corrupt",
        ["fit", "--config", QUICKSTART, "--ckpt_path", "{files}/corrupt.ckpt"],
        ["corrupt.ckpt cannot be read", "truncated or not a PyTorch checkpoint"],
    ),
    (
        "resume checkpoint holding a pickled object",
        ["test", "--config", QUICKSTART, "--ckpt_path", "{files}/pickled.ckpt"],
        ["pickled.ckpt holds a pickled Python object (print)", "if you trust the file, pass --weights_only false"],
    ),
    (
        "resume checkpoint naming a foreign class",
        ["test", "--config", QUICKSTART, "--ckpt_path", "{files}/foreign_class.ckpt"],
        [
            "names the class not_installed_payload.Neuron (at model.neuron)",
            "only from snn_lightning, torch, lightning",
            "name that class in your config or pass --trusted_packages '[not_installed_payload]'",
        ],
    ),
    (
        "resume checkpoint of another model",
        ["fit", "--config", QUICKSTART, *TINY, "--ckpt_path", "{checkpoint}", "--model.width_multiplier", "0.5"],
        [
            "last.ckpt does not fit the configured model",
            "tensors differ in shape",
            "network.stem.0.module.weight: [8, 1, 3, 3] in the checkpoint, [16, 1, 3, 3] in the model",
            "config.yaml",
        ],
    ),
    (
        "evaluation without a checkpoint",
        ["test", "--config", QUICKSTART],
        ["test evaluates a trained model, and no --ckpt_path was given", "pass --ckpt_path best or last"],
    ),
    (
        "last checkpoint before any run",
        ["test", "--config", QUICKSTART, "--ckpt_path", "last"],
        [
            "--ckpt_path last looks for the newest run under logs/quickstart with a checkpoint, and there is none",
            "train one first",
        ],
    ),
    (
        "best checkpoint before any run",
        ["test", "--config", QUICKSTART, "--ckpt_path", "best"],
        ["--ckpt_path best looks for the newest run under logs/quickstart with a checkpoint, and there is none"],
    ),
    (
        "empty checkpoint path for fit",
        ["fit", "--config", QUICKSTART, "--ckpt_path", ""],
        ["--ckpt_path is empty; give the path of a .ckpt file or best / last", "or leave it out to train afresh"],
    ),
    (
        "empty checkpoint path for test",
        ["test", "--config", QUICKSTART, "--ckpt_path", ""],
        ["--ckpt_path is empty; give the path of a .ckpt file or best / last (the newest run under logs/quickstart)"],
    ),
    (
        "negative epoch count",
        ["fit", "--config", QUICKSTART, "--trainer.max_epochs", "-5"],
        [
            "trainer.max_epochs is out of range (max_epochs must be a non-negative integer or -1. You passed in -5.)",
            "fix trainer.max_epochs",
        ],
    ),
    (
        "negative learning rate",
        ["fit", "--config", QUICKSTART, *TINY, "--model.optimizer.lr", "-0.1"],
        [
            "a setting of model.optimizer is out of range (Invalid learning rate: -0.1)",
            "fix it in model.optimizer.init_args",
        ],
    ),
    (
        "CIFAR root that is a file",
        ["fit", "--config", QUICKSTART, *CIFAR, "--data.root", "{files}/a_file"],
        ["data.root", "a_file is a file, not a folder; set data.init_args.root to the folder holding the dataset"],
    ),
    (
        "CIFAR batch truncated",
        ["fit", "--config", QUICKSTART, *CIFAR, "--data.root", "{files}/cifar_truncated"],
        [
            "cifar_truncated/cifar-10-batches-py/data_batch_2 is not a CIFAR batch (pickle data was truncated)",
            "delete",
            "and run again with data.init_args.download: true",
        ],
    ),
    (
        "CIFAR batch holding a pickled object",
        ["fit", "--config", QUICKSTART, *CIFAR, "--data.root", "{files}/cifar_pickled"],
        [
            "cifar_pickled/cifar-10-batches-py/data_batch_1 is not a CIFAR batch",
            "names the Python object pathlib.Path.touch",
            "nothing in it was run",
        ],
    ),
    (
        "frame-cache folder that is a file",
        [
            "fit",
            "--config",
            DVS,
            "--data.dataset",
            "nmnist",
            "--data.root",
            "{files}/events",
            "--data.cache_dir",
            "{files}/a_file",
            "--model.width_multiplier",
            "0.25",
        ],
        [
            "data.cache_dir",
            "a_file cannot hold the frame cache",
            "a_file is a file; set data.init_args.cache_dir to a folder",
        ],
    ),
    (
        "log folder inside a file",
        ["fit", "--config", QUICKSTART, "--trainer.default_root_dir", "{files}/a_file/logs"],
        ["a_file/logs cannot be created", "a_file is a file; change trainer.default_root_dir"],
    ),
    (
        "log folder not writable",
        ["fit", "--config", QUICKSTART, "--trainer.default_root_dir", "/proc/snn-logs"],
        ["output folder /proc/snn-logs is not writable", "change trainer.default_root_dir"],
    ),
    (
        "sync-BN on CPU processes",
        [
            "fit",
            "--config",
            QUICKSTART,
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.sync_batchnorm",
            "true",
        ],
        ["trainer.sync_batchnorm is true but the processes run on CPUs", "set trainer.sync_batchnorm: false"],
    ),
]


@pytest.mark.parametrize("case, args, fragments", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gives_one_clear_error(case, args, fragments, files, request, capsys, in_tmp_dir):
    checkpoint = request.getfixturevalue("trained_checkpoint") if "{checkpoint}" in args else None
    args = [arg.format(files=files, checkpoint=checkpoint) for arg in args]
    code, _, err = run_main(args, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (in_tmp_dir / "logs" / "quickstart" / "checkpoints").exists(), "a failed start writes no checkpoint"
    assert not (files / "marker").exists(), "a data file's payload never runs"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_accelerator_without_a_gpu_gives_one_line(capsys, in_tmp_dir):
    code, _, err = run_main(["fit", "--config", QUICKSTART, "--trainer.accelerator", "gpu"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "error: trainer.accelerator is gpu but this machine has no such device" in err
    assert "use --trainer.accelerator cpu, or auto" in err
    assert not (in_tmp_dir / "logs").exists()


def test_wandb_without_login_or_network_names_both_fixes(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    # An API key (without one the CLI logs offline) and a server that refuses connections: wandb cannot start a run.
    env.update(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"), WANDB_BASE_URL="http://127.0.0.1:9")
    env.update(WANDB_API_KEY="0" * 40, WANDB_INIT_TIMEOUT="15")
    args = [
        sys.executable,
        "-m",
        "snn_lightning.cli",
        "fit",
        "--config",
        QUICKSTART,
        *TINY,
        "--trainer.logger",
        "lightning.pytorch.loggers.WandbLogger",
    ]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith("error: wandb could not start its run (")
    assert "WANDB_MODE=offline" in lines[0] and "--trainer.logger lightning.pytorch.loggers.CSVLogger" in lines[0]
    assert not (tmp_path / "logs").exists(), "the failed start leaves no run folder"


def test_a_full_disk_is_reported_before_the_first_epoch(capsys, in_tmp_dir, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    code, _, err = run_main(["fit", "--config", QUICKSTART], capsys)
    assert code == 2
    assert "only 1 MiB are free on the disk of output folder" in err and "needs about" in err
    assert not (in_tmp_dir / "logs").exists()


def test_an_image_too_small_for_the_stem_is_explained():
    model = spiking_resnet20(num_classes=10, in_channels=1, time_steps=2, width_multiplier=0.05)
    with pytest.raises(
        ConfigurationError, match=r"input images are 1×1 .* needs at least 2×2, or its feature maps shrink to 0×0"
    ):
        model(torch.rand(2, 1, 1, 1))


def test_time_steps_other_than_the_checkpoints_are_refused_and_other_settings_come_from_it(
    trained_checkpoint, in_tmp_dir, capsys
):
    args = ["test", "--config", QUICKSTART, "--ckpt_path", str(trained_checkpoint), "--trainer.logger", "false"]
    args += ["--trainer.limit_test_batches", "1"]
    code, _, err = run_main([*args, "--model.time_steps", "2"], capsys)
    assert code == 2 and "--model.eval_time_steps 2 and drop --model.time_steps" in err
    cli = SNNLightningCLI(args=[*args, "--model.eval_time_steps", "2"])
    assert cli.model.time_steps == 4 and cli.model.eval_time_steps == 2
    assert cli.model.hparams.width_multiplier == 0.25, "the other model settings come from the checkpoint"


class TwoTerms(L.LightningModule):
    """A linear classifier whose KD term turns NaN at global step 3; logs train/ce and train/kd (test helper)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        ce = nn.functional.cross_entropy(self.layer(inputs), targets)
        kd = ce * 0 + (float("nan") if self.global_step == 3 else 0.1)
        self.log("train/ce", ce)
        self.log("train/kd", kd, on_step=True, on_epoch=True)
        return ce + kd

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
        return torch.utils.data.DataLoader(data, batch_size=8)


def test_a_nan_loss_stops_naming_the_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(
        tmp_path, filename="last", every_n_train_steps=1, enable_version_counter=False
    )
    trainer = L.Trainer(max_epochs=1, callbacks=[NaNGuard(), checkpoints], logger=False, enable_progress_bar=False)
    model = TwoTerms()
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit(model)
    message = str(error.value)
    assert "non-finite loss: train/kd=nan (finite: train/ce=" in message
    assert "at global step 3 (epoch 0, batch 3)" in message
    assert f"resume from the untouched checkpoint with --ckpt_path {tmp_path / 'last.ckpt'}" in message
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3
    torch.testing.assert_close(saved["state_dict"]["layer.weight"], model.layer.weight.detach())
    assert all(torch.isfinite(value).all() for value in saved["state_dict"].values())


def test_the_cli_stops_a_diverging_run_with_one_line(capsys, in_tmp_dir):
    args = [
        "fit",
        "--config",
        QUICKSTART,
        "--model.optimizer.init_args.lr",
        "1e30",
        *TINY,
        "--trainer.limit_train_batches",
        "6",
    ]
    code, _, err = run_main(args, capsys)
    assert code == 2
    # The weights overflow after a step whose loss was still finite: NaNGuard stops there, not at the next loss.
    assert re.search(
        r"error: non-finite weights: network\.stem\.0\.module\.weight holds (NaN|infinite values) after training batch",
        err,
    )
    assert "training stopped before a checkpoint held it" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
