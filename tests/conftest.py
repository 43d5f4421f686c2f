"""Shared fixtures: paths of the repository's configs."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run the test with the working directory in a fresh temporary folder (logs land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
