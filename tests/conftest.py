"""Shared fixtures: paths of the repository's configs."""

import snn_lightning  # noqa: F401  (first, before torch: it sets OpenMP's wait policy)

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


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
