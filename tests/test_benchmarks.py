"""Every benchmark script runs end to end in its smoke mode: seconds, no real dataset, writes only in a tmp folder.

Scripts that read Fashion-MNIST get small IDX files in the real format; the others use the embedded
digits or generated tensors. An optional anchor (SpikingJelly, snnTorch) that is not installed must
show as "not installed" in the table; when it is installed, its rows run too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from helpers import write_mnist

BENCHMARKS = REPO / "benchmarks"
NUMBER = r"(\d+(?:\.\d+)?)"
NOT_INSTALLED = "not installed (pip install -e .[bench])"


def run_script(*arguments: str, cwd: Path) -> str:
    """Run a benchmark script with this Python in ``cwd``, its temporary files in a folder of its own; return its stdout."""
    # A short folder: under pytest's long tmp_path, dataloader workers could not open their socket (loaders.py).
    with tempfile.TemporaryDirectory(prefix="bench-") as temporary:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": temporary}
        result = subprocess.run(
            [sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def check_energy_rule(output: str, folder: Path) -> None:
    figures = r" \| ".join([NUMBER] * 5)
    row = re.search(rf"^\| resnet20 16 px \| {figures} \|$", output, re.MULTILINE)
    assert row, output
    as_ac, as_mac = float(row[1]), float(row[2])
    assert 0 < as_ac <= as_mac, "pooled spikes cost at least as much counted as MACs"


def check_event_loading(output: str, folder: Path) -> None:
    assert "T=3, batch 32" in output, "the frames of configs/quickstart_dvs.yaml"
    row = re.search(rf"^\s+0\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", output, re.MULTILINE)
    assert row and all(float(rate) > 0 for rate in row.groups()), output


def check_fashion_diagnosis(output: str, folder: Path) -> None:
    rows = dict(re.findall(r"\| (\w+) \| (0\.\d{4}|1\.0000) \|", output))
    assert set(rows) == {"former", "convnet2_new_recipe"}, output


def check_kd_digits(output: str, folder: Path) -> None:
    rows = dict(re.findall(r"^\| (CE|KD, label targets) \| (\d+\.\d\d) ± 0\.00 \|$", output, re.MULTILINE))
    assert set(rows) == {"CE", "KD, label targets"}, output
    # Every accuracy is a share of the 359 test digits.
    assert all(
        float(value) * 359 / 100 == pytest.approx(round(float(value) * 359 / 100), abs=0.02) for value in rows.values()
    )


def anchor_cells(output: str, name: str, package: str) -> None:
    """Assert that the row of the anchor ``name`` has figures when ``package`` is installed, else says so."""
    row = next((line for line in output.splitlines() if line.startswith(f"| {name}")), None)
    assert row, output
    installed = importlib.util.find_spec(package) is not None
    assert (NOT_INSTALLED not in row) == installed and "failed" not in row, row


def check_neurons(output: str, folder: Path) -> None:
    for backend in ("reference", "fused"):
        assert re.search(rf"^\| ours \({backend}\)\s+\| 4 \| {NUMBER} \| {NUMBER} \|", output, re.MULTILINE), output
    anchor_cells(output, "SpikingJelly", "spikingjelly")
    anchor_cells(output, "snnTorch", "snntorch")


def check_paper_claims(output: str, folder: Path) -> None:
    accuracies = dict(re.findall(r"^\| (CE|classical KD) \| (\d+\.\d\d) \|", output, re.MULTILINE))
    assert set(accuracies) == {"CE", "classical KD"}, output
    # Every accuracy is a share of the 20 test images.
    assert all(
        float(value) * 20 / 100 == pytest.approx(round(float(value) * 20 / 100)) for value in accuracies.values()
    )
    assert "| classical KD − CE |" in output and "bf16-mixed" in output
    assert (folder / "out/paper_claims.md").read_text().strip() in output
    assert len(list((folder / "out").glob("teacher-resnet18-*.ckpt"))) == 1, "the teacher is cached"


def check_plain_loop(output: str, folder: Path) -> None:
    row = re.search(r"\| convnet2 \| (\d+) \| (\d+) \| ([\d.]+)× \| (\d+) \| (\d+) \|", output)
    assert row, output
    plain, framework, ratio = int(row[1]), int(row[2]), float(row[3])
    assert plain > 0 and framework > 0 and ratio == pytest.approx(framework / plain, abs=0.02 + 0.01 * ratio)


def check_spike_conv(output: str, folder: Path) -> None:
    rows = re.findall(r"^\| \d+→\d+, \d+, [12] \| 0\.10 \| .*\(\d+\.\d\d×\) \|$", output, re.MULTILINE)
    assert len(rows) == 5, output


def check_train_step(output: str, folder: Path) -> None:
    rows = re.findall(rf"^\| ours, [^|]+ \| {NUMBER}", output, re.MULTILINE)
    assert len(rows) == 6 and all(float(rate) > 0 for rate in rows), output
    anchor_cells(output, "SpikingJelly", "spikingjelly")


@dataclass(frozen=True)
class Smoke:
    """How the suite runs one script: its arguments, whether it reads Fashion-MNIST IDX files, the output check."""

    arguments: tuple[str, ...]
    check: Callable[[str, Path], None]
    idx_files: bool = False


SMOKE = {
    "energy_rule.py": Smoke(("--smoke",), check_energy_rule),
    "event_loading.py": Smoke(("--smoke",), check_event_loading),
    "fashion_diagnosis.py": Smoke(("--smoke",), check_fashion_diagnosis),
    "kd_digits.py": Smoke(("--smoke",), check_kd_digits),
    "neurons.py": Smoke(("--smoke",), check_neurons),
    "paper_claims.py": Smoke(
        ("--smoke", "--root", "data", "--precision", "bf16-mixed", "--out", "out"), check_paper_claims, idx_files=True
    ),
    "plain_loop.py": Smoke(("compare", "--smoke", "--root", "data"), check_plain_loop, idx_files=True),
    "spike_conv.py": Smoke(("--smoke",), check_spike_conv),
    "train_step.py": Smoke(("--smoke",), check_train_step),
}
# Over 20 s each on 2 busy cores (they start several Python processes; paper_claims also trains a teacher).
SLOW = {"fashion_diagnosis.py", "paper_claims.py", "plain_loop.py", "train_step.py"}


def test_every_benchmark_script_has_a_smoke_run() -> None:
    scripts = {path.name for path in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__":' in path.read_text()}
    assert scripts == set(SMOKE), "give a new script a --smoke mode and an entry in SMOKE"


@pytest.mark.parametrize(
    "script", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in SMOKE]
)
def test_smoke_run(script: str, tmp_path: Path) -> None:
    smoke = SMOKE[script]
    if smoke.idx_files:
        write_mnist(tmp_path / "data", train=64, test=20)
    output = run_script(str(BENCHMARKS / script), *smoke.arguments, cwd=tmp_path)
    smoke.check(output, tmp_path)
    written = {path.name for path in tmp_path.iterdir()} - {"data", "out"}
    assert not written, f"{script} wrote {written} into its working folder"


def test_plain_loop_trains_and_tests_on_idx_files(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data", train=40, test=20)
    script = str(BENCHMARKS / "plain_loop.py")
    result = json.loads(
        run_script(script, "train", "--root", "data", "--epochs", "2", "--batch-size", "8", "--skip", "1", cwd=tmp_path)
    )
    assert result["images_per_s"] > 0 and 0 <= result["test_acc"] <= 1
    assert (result["test_acc"] * 20) == pytest.approx(round(result["test_acc"] * 20)), "a share of the 20 test images"
