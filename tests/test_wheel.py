"""A pip user's install: the wheel, installed into a fresh environment, runs a shipped config by name from an empty folder."""

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import REPO
from helpers import TWO_BATCHES

from snn_lightning.cli.shipped_configs import shipped_config_names, with_shipped_configs


def build_wheel(tmp_path: Path) -> Path:
    """Build the package's wheel from a copy of the sources (an in-tree build would write build/ into the repository)."""
    source = tmp_path / "source"
    local = {".git", ".venv", "logs", "data", "build", "dist", "benchmarks", "notebooks"}  # top level only

    def ignored(folder: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name == "__pycache__" or name.endswith((".egg-info", ".whl"))}
        return skipped | (local & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, source, symlinks=True, ignore=ignored)
    wheels = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*command, "-w", str(wheels), str(source)], check=True, timeout=600)
    (wheel,) = wheels.glob("snn_lightning-*.whl")
    return wheel


def fresh_environment(tmp_path: Path, wheel: Path) -> Path:
    """Return the bin folder of a new venv with ``wheel`` installed; the dependencies come from this environment.

    This environment's site-packages is added as a plain path, so its ``.pth`` files (among them the
    editable install of this repository) are not read and ``snn_lightning`` is the wheel's.
    """
    root = tmp_path / "venv"
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    )
    (Path(site.strip()) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True, timeout=300
    )
    return root / "bin"


@pytest.mark.slow
def test_the_wheel_runs_a_shipped_config_by_name_from_an_empty_folder(tmp_path):
    wheel = build_wheel(tmp_path)
    files = set(zipfile.ZipFile(wheel).namelist())
    for name in ("quickstart.yaml", "base/staa_resnet19_cifar.yaml", "slurm/train.sbatch", "slurm/ddp.yaml"):
        assert f"snn_lightning/configs/{name}" in files
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in files)

    bin_dir = fresh_environment(tmp_path, wheel)
    empty = tmp_path / "empty"
    empty.mkdir()
    installed = subprocess.check_output(
        [bin_dir / "python", "-c", "import snn_lightning; print(snn_lightning.__file__)"], cwd=empty, text=True
    )
    assert installed.startswith(str(tmp_path / "venv")), installed
    fit = [bin_dir / "snn-lightning", "fit", "--config", "quickstart", *TWO_BATCHES]
    result = subprocess.run(fit, cwd=empty, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((empty / "logs" / "quickstart").glob("version_0/checkpoints/*.ckpt"))

    copy = subprocess.run(
        [bin_dir / "snn-lightning", "configs", "copy", "configs"], cwd=empty, capture_output=True, text=True
    )
    assert copy.returncode == 0, copy.stderr
    assert (empty / "configs" / "quickstart.yaml").is_file() and (empty / "configs" / "base").is_dir()


def test_a_config_name_becomes_the_shipped_file_unless_a_file_of_that_name_is_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = str(REPO / "snn_lightning" / "configs" / "quickstart.yaml")
    assert with_shipped_configs(["fit", "--config", "quickstart"]) == ["fit", "--config", shipped]
    assert with_shipped_configs(["fit", "-c", "quickstart.yaml", "--x", "1"]) == ["fit", "-c", shipped, "--x", "1"]
    assert with_shipped_configs(["fit", "--config=configs/quickstart.yaml"]) == ["fit", f"--config={shipped}"]
    assert with_shipped_configs(["fit", "--config", "no_such_config"]) == ["fit", "--config", "no_such_config"]
    assert with_shipped_configs(["fit", "--config", "../quickstart"]) == ["fit", "--config", "../quickstart"]
    (tmp_path / "quickstart.yaml").write_text("trainer: {max_epochs: 1}\n")
    assert with_shipped_configs(["fit", "--config", "quickstart.yaml"]) == ["fit", "--config", "quickstart.yaml"]
    assert {"quickstart", "quickstart_fashion", "staa_cifar100", "tser_resnet19_cifar100"} <= set(
        shipped_config_names()
    )


def test_configs_list_and_copy_and_their_errors(tmp_path, capsys):
    from snn_lightning.cli.main import main

    main(["configs", "list"])
    assert "staa_cifar100" in capsys.readouterr().out.split()
    main(["configs", "copy", str(tmp_path / "mine")])
    assert (tmp_path / "mine" / "slurm" / "train.sbatch").is_file()
    assert f"to {tmp_path / 'mine'}" in capsys.readouterr().err
    for args, message in (
        (["configs", "copy", str(tmp_path / "mine")], "exists and is not an empty folder; name a new or empty folder"),
        (["configs"], "configs takes `list` or `copy DIR`, got nothing"),
    ):
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2 and message in capsys.readouterr().err
