"""The Fashion-MNIST benchmark scripts run end to end in their smoke modes, on small IDX files the tests write."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from helpers import write_mnist

pytestmark = pytest.mark.slow


def run_script(*arguments: str, cwd: Path) -> str:
    """Run a benchmark script with this Python; return its stdout, failing with its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_plain_loop_trains_and_tests_on_idx_files(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data", train=40, test=20)
    script = str(REPO / "benchmarks/plain_loop.py")
    result = json.loads(
        run_script(script, "train", "--root", "data", "--epochs", "2", "--batch-size", "8", "--skip", "1", cwd=tmp_path)
    )
    assert result["images_per_s"] > 0 and 0 <= result["test_acc"] <= 1
    assert (result["test_acc"] * 20) == pytest.approx(round(result["test_acc"] * 20)), "a share of the 20 test images"


def test_plain_loop_compare_prints_both_speeds_and_their_ratio(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data", train=40, test=20)
    output = run_script(str(REPO / "benchmarks/plain_loop.py"), "compare", "--smoke", "--root", "data", cwd=tmp_path)
    row = re.search(r"\| convnet2 \| (\d+) \| (\d+) \| ([\d.]+)× \| (\d+) \| (\d+) \|", output)
    assert row, output
    plain, framework, ratio = int(row[1]), int(row[2]), float(row[3])
    assert plain > 0 and framework > 0 and ratio == pytest.approx(framework / plain, abs=0.02 + 0.01 * ratio)


def test_fashion_diagnosis_smoke_prints_a_row_per_variant(tmp_path: Path) -> None:
    output = run_script(str(REPO / "benchmarks/fashion_diagnosis.py"), "--smoke", cwd=tmp_path)
    rows = dict(re.findall(r"\| (\w+) \| (0\.\d{4}|1\.0000) \|", output))
    assert set(rows) == {"former", "convnet2_new_recipe"}, output


def test_paper_claims_smoke_trains_teacher_and_students_and_writes_the_tables(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data", train=64, test=20)
    arguments = ["--root", "data", "--seeds", "0", "--epochs", "1", "--teacher-epochs", "1", "--batch-size", "16"]
    arguments += ["--methods", "CE", "classical KD", "--jobs", "1", "--precision", "bf16-mixed", "--out", "out"]
    output = run_script(str(REPO / "benchmarks/paper_claims.py"), *arguments, cwd=tmp_path)
    accuracies = dict(re.findall(r"^\| (CE|classical KD) \| (\d+\.\d\d) \|", output, re.MULTILINE))
    assert set(accuracies) == {"CE", "classical KD"}, output
    # Every accuracy is a share of the 20 test images.
    assert all(
        float(value) * 20 / 100 == pytest.approx(round(float(value) * 20 / 100)) for value in accuracies.values()
    )
    assert "| classical KD − CE |" in output and "bf16-mixed" in output
    assert (tmp_path / "out/paper_claims.md").read_text().strip() in output
    assert len(list((tmp_path / "out").glob("teacher-resnet18-*.ckpt"))) == 1, "the teacher is cached"
