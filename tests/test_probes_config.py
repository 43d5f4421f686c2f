"""Probes of issue 27 on settings and output: duplicate YAML keys, a folder for a file, a misspelled class_path,
where predict wrote, and memory run out at a large T. Each mistake gives one `error:` line, exit status 2."""

from types import SimpleNamespace

import pytest
import torch
from conftest import REPO
from helpers import ONE_BATCH_FIT as TINY
from helpers import QUICKSTART, run_main

from snn_lightning.callbacks import PredictionWriter
from snn_lightning.distill.teacher import TeacherCheckpointError, load_teacher
from snn_lightning.modules import SNNClassifier

# Enough to end quickly if a mistake were not refused: one batch of a narrow network.


def error_line(code: int, err: str) -> str:
    """Return the one `error:` line of a refused command, checking that it stopped with status 2 and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


# --- duplicate keys in YAML ------------------------------------------------------------------------

DUPLICATE_MODEL = """\
model:
  class_path: snn_lightning.modules.SNNClassifier
  init_args:
    arch: resnet_mini
    time_steps: 2
trainer:
  max_epochs: 1
model:
  class_path: snn_lightning.modules.SNNClassifier
"""
DUPLICATE_NESTED = """\
model:
  init_args:
    time_steps: 2
    width_multiplier: 0.25
    time_steps: 3
"""


@pytest.mark.parametrize(
    "text, key, lines",
    [(DUPLICATE_MODEL, "model", "lines 1 and 8"), (DUPLICATE_NESTED, "model.init_args.time_steps", "lines 3 and 5")],
    ids=["a second model block", "a nested key"],
)
def test_a_key_given_twice_in_a_config_file_is_refused_naming_file_key_and_lines(text, key, lines, capsys, in_tmp_dir):
    (in_tmp_dir / "twice.yaml").write_text(text)
    code, _, err = run_main(["fit", "--config", QUICKSTART, "--config", "twice.yaml", *TINY], capsys)
    line = error_line(code, err)
    assert f"config file twice.yaml sets {key} twice, at {lines}" in line
    assert "merge them into one" in line
    assert not (in_tmp_dir / "logs").exists(), "nothing ran"


def test_a_key_given_twice_in_inline_yaml_is_refused(capsys, in_tmp_dir):
    inline = "trainer: {max_epochs: 1, max_epochs: 2}"
    code, _, err = run_main(["fit", "--config", QUICKSTART, "--config", inline, *TINY], capsys)
    line = error_line(code, err)
    assert f"--config {inline!r} sets trainer.max_epochs twice (line 1 of that YAML)" in line


def test_a_key_given_twice_in_a_base_config_is_refused(capsys, in_tmp_dir):
    (in_tmp_dir / "base.yaml").write_text(DUPLICATE_NESTED)
    (in_tmp_dir / "child.yaml").write_text("config: base.yaml\n")
    code, _, err = run_main(["fit", "--config", QUICKSTART, "--config", "child.yaml", *TINY], capsys)
    assert "base.yaml sets model.init_args.time_steps twice, at lines 3 and 5" in error_line(code, err)


def test_a_merge_key_may_be_overridden_and_the_shipped_configs_have_no_duplicates():
    from snn_lightning.cli.settings import _load_config_file, _settings_of

    merged = _load_config_file("defaults: &d {lr: 0.1, momentum: 0.9}\nsgd:\n  <<: *d\n  lr: 0.2\n")
    assert merged["sgd"] == {"lr": 0.2, "momentum": 0.9}
    for config in sorted((REPO / "configs").rglob("*.yaml")):
        _settings_of(str(config))


# --- a folder where a file is expected --------------------------------------------------------------


def test_a_folder_given_as_config_file_says_it_is_a_folder(capsys, in_tmp_dir):
    (in_tmp_dir / "configs").mkdir()
    (in_tmp_dir / "configs" / "mine.yaml").write_text("trainer: {max_epochs: 1}\n")
    code, _, err = run_main(["fit", "--config", "configs/"], capsys)
    line = error_line(code, err)
    assert "configs is a folder, not a file (it holds mine.yaml)" in line
    assert "--config takes a YAML file" in line


@pytest.mark.parametrize("command", ["fit", "export"])
def test_a_folder_given_as_checkpoint_says_it_is_a_folder_and_names_its_checkpoints(command, capsys, in_tmp_dir):
    (in_tmp_dir / "run" / "checkpoints").mkdir(parents=True)
    (in_tmp_dir / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    code, _, err = run_main([command, "--config", QUICKSTART, *TINY[:2], "--ckpt_path", "run/"], capsys)
    line = error_line(code, err)
    assert "is a folder, not a file (it holds checkpoints/last.ckpt); give " in line and "path of a .ckpt file" in line


def test_a_folder_given_as_teacher_checkpoint_says_it_is_a_folder(tmp_path):
    with pytest.raises(TeacherCheckpointError, match="is a folder, not a file;"):
        load_teacher(str(tmp_path), "resnet18", 10, 1, "cifar")


# --- a misspelled class_path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, setting, given, meant",
    [
        (["--model", "snn_lightning.modules.SNNClasifier"], "model", None, "snn_lightning.modules.SNNClassifier"),
        (
            ["--config", "model: {class_path: SNNClasifier}"],
            "model",
            "SNNClasifier",
            "snn_lightning.modules.SNNClassifier",
        ),
        (["--model.neuron", "snn_lightning.neurons.LIFF"], "model.init_args.neuron", None, "snn_lightning.neurons.LIF"),
        (["--model.neuron", "LIFF"], "model.init_args.neuron", None, "snn_lightning.neurons.LIF"),
        (
            ["--data", "snn_lightning.data.StaticImageDataModul"],
            "data",
            None,
            "snn_lightning.data.StaticImageDataModule",
        ),
    ],
    ids=["module path", "short name", "neuron path", "short neuron", "data module"],
)
def test_a_misspelled_class_path_suggests_the_class_meant(args, setting, given, meant, capsys, in_tmp_dir):
    code, _, err = run_main(["fit", "--config", QUICKSTART, *args], capsys)
    line = error_line(code, err)
    assert f"error: {setting} names class {given or args[1]}, which does not exist (did you mean {meant}?)" in line
    assert "; known classes: " in line


# --- where predict wrote ----------------------------------------------------------------------------


def test_the_prediction_writer_prints_the_files_it_wrote(tmp_path, capsys):
    trainer = SimpleNamespace(world_size=1, global_rank=0, is_global_zero=True, default_root_dir=str(tmp_path))
    batch = {"prediction": torch.tensor([1, 0]), "target": torch.tensor([1, 1]), "probabilities": torch.eye(2)[[1, 0]]}
    PredictionWriter().write_on_epoch_end(trainer, None, [batch], [[0, 1]])
    err = capsys.readouterr().err
    assert f"predictions (2 samples): {tmp_path / 'predictions.csv'}, {tmp_path / 'predictions.pt'}" in err
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "predictions.pt").is_file()


# --- memory run out at a large T --------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:119] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 68719476736 bytes."
        ),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB."),
    ],
    ids=["cpu allocator", "torch OutOfMemoryError"],
)
def test_running_out_of_memory_names_time_steps_and_batch_size(error, capsys, in_tmp_dir, monkeypatch):
    def forward(self, inputs):
        raise error

    monkeypatch.setattr(SNNClassifier, "forward", forward)
    code, _, err = run_main(["fit", "--config", QUICKSTART, *TINY, "--model.time_steps", "64"], capsys)
    line = error_line(code, err)
    assert "error: out of memory with model.time_steps=64 and data.batch_size=32" in line
    assert "lower model.time_steps (or only for evaluation model.eval_time_steps) or data.batch_size" in line
