"""Shared fixtures: paths of the repository's configs, a temporary working folder, a Python without a C++ compiler."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import snn_lightning  # noqa: F401  (first, before torch: it sets OpenMP's wait policy)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def pytest_configure(config: pytest.Config) -> None:
    """Hide pytest's own arguments from the CLIs built in tests; share the cores among pytest-xdist workers.

    LightningCLI warns when it is given ``args=[...]`` while ``sys.argv`` holds arguments too. Under
    ``pytest -n N`` each worker gets ``cores // N`` torch threads, so N workers do not oversubscribe.
    """
    del sys.argv[1:]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run the test with the working directory in a fresh temporary folder (logs land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def rank_zero_restored():
    """Give every test rank 0 back: a Trainer built with simulated cluster variables sets another global rank, which silences rank-zero logging."""
    from lightning_utilities.core.rank_zero import rank_zero_only

    rank = getattr(rank_zero_only, "rank", 0)
    yield
    rank_zero_only.rank = rank


@pytest.fixture
def run_without_compiler(tmp_path):
    """Return a function that runs Python ``code`` in a fresh process whose C++ compiler is missing and returns its stdout."""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "SNN_LIGHTNING_CACHE": str(tmp_path)}

    def run(code: str) -> str:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run
