"""Probes that must stay closed: a checkpoint that names code, NaN in the data, lazy layers, EMA weight averaging under DDP."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import ONE_BATCH_FIT as TINY
from helpers import QUICKSTART, run_main
from torch import nn

import snn_lightning.data.static
from snn_lightning.callbacks.nan_guard import NaNGuard
from snn_lightning.callbacks.safety import checkpoint_size
from snn_lightning.checkpoints import TRUSTED_PACKAGES, import_paths, untrusted_imports
from snn_lightning.cli import SNNLightningCLI, main
from snn_lightning.errors import NonFiniteValueError

# --- a checkpoint's stored settings name code outside the trusted packages ---------------------------

# A module whose import, or a call of its function, leaves a file behind: what a checkpoint must not cause.
PAYLOAD = """from pathlib import Path

Path(__file__).with_name("imported").touch()


def step(epoch):
    Path(__file__).with_name("called").touch()
    return 1.0


class Neuron:
    pass
"""

# (stored setting, where the error says it is), each a place jsonargparse imports a string from.
STORED_NAMES = {
    "an lr_lambda": (
        {
            "lr_scheduler": {
                "class_path": "torch.optim.lr_scheduler.LambdaLR",
                "init_args": {"lr_lambda": "payload.step"},
            }
        },
        "payload.step (at model.lr_scheduler.lr_lambda)",
    ),
    "a class given as a plain string": ({"neuron": "payload.Neuron"}, "payload.Neuron (at model.neuron)"),
    "a name in a list": (
        {
            "lr_scheduler": {
                "class_path": "torch.optim.lr_scheduler.LambdaLR",
                "init_args": {"lr_lambda": ["payload.step"]},
            }
        },
        "payload.step (at model.lr_scheduler.lr_lambda[0])",
    ),
}


@pytest.fixture
def payload(in_tmp_dir, monkeypatch):
    """Put the module ``payload`` on sys.path; return its folder, where its import or call leaves a file."""
    (in_tmp_dir / "payload.py").write_text(PAYLOAD)
    monkeypatch.syspath_prepend(str(in_tmp_dir))
    monkeypatch.delitem(sys.modules, "payload", raising=False)
    return in_tmp_dir


@pytest.mark.parametrize("subcommand", ["fit", "test"])
@pytest.mark.parametrize("case", list(STORED_NAMES))
def test_a_checkpoint_naming_a_function_outside_the_trusted_packages_imports_and_calls_nothing(
    payload, capsys, case, subcommand
):
    stored, named = STORED_NAMES[case]
    settings = {"_class_path": "snn_lightning.modules.SNNClassifier", "arch": "resnet_mini", "time_steps": 4, **stored}
    checkpoint = {"state_dict": {}, "pytorch-lightning_version": L.__version__, "hyper_parameters": settings}
    torch.save(checkpoint, payload / "it.ckpt")
    code, _, err = run_main([subcommand, "--config", QUICKSTART, *TINY, "--ckpt_path", "it.ckpt"], capsys)
    assert not (payload / "imported").exists() and not (payload / "called").exists()
    assert code == 2
    assert f"error: checkpoint it.ckpt names {named}; the CLI takes classes and functions" in err
    assert "pass --trusted_packages '[payload]'" in err and "Traceback" not in err


def test_a_name_that_reaches_outside_through_a_trusted_module_is_refused():
    # torch imports os, so torch.os._exit is os._exit; only getattr runs, nothing is called.
    settings = {"lr_scheduler": {"init_args": {"lr_lambda": "torch.os._exit"}}, "ok": "torch.optim.SGD"}
    assert untrusted_imports(settings, TRUSTED_PACKAGES) == [
        ("torch.os._exit (at model.lr_scheduler.lr_lambda), which reaches os", "os")
    ]


def test_only_strings_that_can_be_imported_count_as_import_paths():
    settings = {
        "teacher_checkpoint": "teacher.ckpt",  # no module named teacher: a file name
        "root": "data/cifar.10",
        "width_multiplier": "0.25",
        "arch": "resnet_mini",
        "neuron": {"class_path": "not_installed.Neuron", "init_args": {"surrogate": "torch.sigmoid"}},
        "schedules": [{"dict_kwargs": {"lr_lambda": "math.cos"}}],
    }
    assert import_paths(settings) == [
        ("not_installed.Neuron", "model.neuron", True),
        ("torch.sigmoid", "model.neuron.surrogate", False),
        ("math.cos", "model.schedules[0].lr_lambda", False),
    ]


# --- NaN in the data, the weights or a BatchNorm statistic --------------------------------------------


def finite_checkpoints(folder: Path) -> dict[str, bool]:
    """Return, for every .ckpt file under ``folder``, whether all its floating tensors are finite."""
    found = {}
    for path in folder.rglob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        found[str(path)] = all(bool(value.isfinite().all()) for value in state.values() if value.is_floating_point())
    return found


def test_a_nan_image_stops_the_run_naming_the_batch_before_a_checkpoint_holds_it(in_tmp_dir, capsys, monkeypatch):
    load_digits = snn_lightning.data.static.load_digits

    def digits_with_a_nan_image(split):
        images, labels = load_digits(split)
        images = images.copy()
        images[7, 0, 3, 3] = float("nan")
        return images, labels

    monkeypatch.setattr(snn_lightning.data.static, "load_digits", digits_with_a_nan_image)
    args = [
        "fit",
        "--config",
        QUICKSTART,
        *TINY,
        "--trainer.limit_train_batches",
        "1.0",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.every_n_train_steps",
        "1",
        "--trainer.callbacks.save_top_k",
        "-1",
        "--trainer.callbacks.filename",
        "step{step}",
    ]
    code, _, err = run_main(args, capsys)
    assert code == 2, err[-2000:]
    assert "error: non-finite input: batch[0] [32, 1, 8, 8] holds NaN in 1 of its 32 samples (" in err
    assert "(epoch 0, batch " in err and "training stopped before this batch reached the model" in err
    assert "Traceback" not in err
    saved = finite_checkpoints(in_tmp_dir)
    assert saved and all(saved.values()), saved


class NaNGradient(L.LightningModule):
    """A linear classifier whose loss stays finite while its gradient turns NaN at global step 2 (test helper)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        loss = nn.functional.cross_entropy(self.layer(inputs), targets)
        if self.global_step == 2:  # d sqrt(x)/dx at 0 is inf; times 0 it is NaN, while sqrt(0) adds 0
            loss = loss + torch.sqrt(self.layer.weight.sum() * 0)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
        return torch.utils.data.DataLoader(data, batch_size=8)


def test_weights_turned_nan_by_a_finite_loss_stop_the_run_naming_the_batch_and_tensor(tmp_path):
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(
        tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1, save_last=True
    )
    trainer = L.Trainer(max_epochs=1, callbacks=[NaNGuard(), checkpoints], logger=False, enable_progress_bar=False)
    with pytest.raises(NonFiniteValueError) as error:
        trainer.fit(NaNGradient())
    message = str(error.value)
    assert message.startswith(
        "non-finite weights: layer.weight holds NaN after training batch 2 of epoch 0 (global step 3), whose loss "
        "was finite; training stopped before a checkpoint held it; resume from the untouched checkpoint with "
        f"--ckpt_path {tmp_path / 'last.ckpt'}"
    ), message
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2
    saved = finite_checkpoints(tmp_path)
    assert sorted(Path(path).name for path in saved) == ["last.ckpt", "step=1.ckpt", "step=2.ckpt"], saved
    assert all(saved.values()), saved


def test_a_buffer_holding_minus_inf_trains_on(tmp_path):
    class Masked(NaNGradient):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mask", torch.tensor([0.0, float("-inf")]))  # as attention masks are

        def training_step(self, batch, batch_idx):
            inputs, targets = batch
            return nn.functional.cross_entropy(self.layer(inputs) + self.mask.clamp(min=-1e9), targets)

    checkpoints = L.pytorch.callbacks.ModelCheckpoint(tmp_path, every_n_train_steps=4)
    trainer = L.Trainer(max_epochs=1, callbacks=[NaNGuard(), checkpoints], logger=False, enable_progress_bar=False)
    trainer.fit(Masked())
    assert trainer.global_step == 8 and list(tmp_path.glob("*.ckpt"))


# --- a user model with lazy layers --------------------------------------------------------------------

LAZY_MODEL = """import lightning as L
import torch
from torch import nn


class LazyDigits(L.LightningModule):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, num_classes))

    def training_step(self, batch, batch_idx):
        images, targets = batch
        return nn.functional.cross_entropy(self.layers(images), targets)

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        self.log("val/acc", (self.layers(images).argmax(-1) == targets).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
"""


def test_a_model_with_lazy_layers_trains_through_the_cli(in_tmp_dir, monkeypatch):
    (in_tmp_dir / "lazymodel.py").write_text(LAZY_MODEL)
    monkeypatch.syspath_prepend(str(in_tmp_dir))
    main(["fit", "--config", QUICKSTART, *TINY, "--model", "lazymodel.LazyDigits"])
    assert list(in_tmp_dir.rglob("last.ckpt"))
    assert checkpoint_size(nn.LazyLinear(16)) == 0, "an uninitialized parameter has no size yet"


# --- EMA weight averaging deep-copies the module --------------------------------------------------------


def test_a_cli_built_module_deep_copies_while_rank_zero_holds_the_other_ranks_processes(in_tmp_dir):
    cli = SNNLightningCLI(args=["--config", QUICKSTART, "--model.width_multiplier", "0.25"], run=False)
    # Under DDP rank 0's launcher keeps the other ranks' Popen objects, whose locks do not copy; the
    # CLI's optimizer factory reaches the trainer through jsonargparse's instantiation context.
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    cli.trainer.strategy.launched_processes = [process]
    copied = copy.deepcopy(cli.model)
    assert copied.network is not cli.model.network
    for name, value in cli.model.state_dict().items():
        assert torch.equal(copied.state_dict()[name], value)
    optimizer = copied.optimizer_factory(copied.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.1


def test_ema_weight_averaging_trains_through_the_cli(in_tmp_dir):
    main(["fit", "--config", QUICKSTART, *TINY, "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging"])
    assert list(in_tmp_dir.rglob("last.ckpt"))


@pytest.mark.slow
def test_ema_weight_averaging_trains_under_ddp(tmp_path):
    command = [
        sys.executable,
        "-m",
        "snn_lightning.cli",
        "fit",
        "--config",
        QUICKSTART,
        *TINY,
        "--trainer.limit_train_batches",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cannot pickle" not in result.stderr
    assert list(tmp_path.rglob("last.ckpt"))
