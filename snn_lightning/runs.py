"""Run folders: one versioned folder per training run, evaluations inside it, and ``best``/``last`` found again later.

A ``fit`` writes everything it makes (config.yaml, checkpoints, logs, plots) into one folder under
``trainer.default_root_dir``::

    logs/quickstart/
        version_0/              # the first fit: config.yaml, run.json, checkpoints/{best,last}.ckpt, metrics.csv
            test_0/             # the first `test` of a version_0 checkpoint: its config.yaml and metrics
        version_1/              # the next fit; nothing of version_0 is touched
        latest -> version_1     # the newest training run

``version_N`` is the next free number, claimed with an atomic ``mkdir`` so that sweep trials
started together never share a folder. Processes of one distributed job that start on their own
(SLURM tasks, torchrun workers) cannot agree on a counter, so they name the folder after the job
(``slurm_<job id>``, ``torchrun_<run id>``); a requeued SLURM job keeps its id and so finds its
folder again. ``run_name`` names the folder directly (sweep trials, a run to find again by name).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import torch

from snn_lightning.errors import CheckpointError, ConfigurationError, OutputDirError

try:
    import fcntl
except ImportError:  # Windows: no flock, so a run folder is not held (two fits given one --run_name can collide)
    fcntl = None

__all__ = [
    "LATEST",
    "RUN_DIR_VARIABLE",
    "RunFolder",
    "claim_version",
    "evaluation_folder",
    "hold_run_folder",
    "job_run_name",
    "launch_rank",
    "newest_checkpoint",
    "point_latest",
    "run_folder_of",
]

# Environment variable naming the run folder; the CLI sets it for the worker processes Lightning
# starts for multi-device DDP, which must write into the folder their rank 0 chose.
RUN_DIR_VARIABLE = "SNN_LIGHTNING_RUN_DIR"
# Name of the link to the newest training run in the root folder.
LATEST = "latest"
# File in a run folder that marks it as one and holds its identity.
RUN_RECORD = "run.json"


@dataclass(frozen=True)
class RunFolder:
    """A training run's folder and its identity: ``id`` (the wandb run id, kept across resumes) and ``name``."""

    path: Path
    id: str
    name: str

    @property
    def group(self) -> str:
        """Return the wandb group shared by the run and its evaluations."""
        return f"{self.name}-{self.id}"

    @classmethod
    def read(cls, path: Path) -> RunFolder:
        """Return the run stored in folder ``path`` (its ``run.json``), or a new identity when it has none yet."""
        record_file = path / RUN_RECORD
        if record_file.is_file():
            record = json.loads(record_file.read_text())
            return cls(path, record["id"], record["name"])
        return cls(path, secrets.token_hex(4), f"{path.parent.name}/{path.name}")

    def write(self) -> None:
        """Create the folder and store the run's identity in it (kept if it is there)."""
        self.path.mkdir(parents=True, exist_ok=True)
        record_file = self.path / RUN_RECORD
        if not record_file.is_file():
            record_file.write_text(json.dumps({"id": self.id, "name": self.name}) + "\n")


def is_run_folder(path: Path) -> bool:
    """Return whether ``path`` is a training run's folder (it holds ``run.json``)."""
    return (path / RUN_RECORD).is_file()


def job_run_name() -> str | None:
    """Return the folder name every process of a distributed job agrees on (SLURM job, torchrun run), or None."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if SLURMEnvironment.detect():
        return f"slurm_{os.environ['SLURM_JOB_ID']}"
    if TorchElasticEnvironment.detect() and os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        return f"torchrun_{os.environ['TORCHELASTIC_RUN_ID']}"
    return None


def launch_rank() -> int:
    """Return this process's global rank as the launcher (SLURM, torchrun) set it; 0 for a process started by hand."""
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def _numbers(parent: Path, prefix: str) -> list[int]:
    """Return the N of the ``<prefix>N`` folders in ``parent``."""
    if not parent.is_dir():
        return []
    return [
        int(match[1]) for entry in parent.iterdir() if (match := re.fullmatch(rf"{re.escape(prefix)}(\d+)", entry.name))
    ]


def _next_numbered(parent: Path, prefix: str) -> Path:
    """Return ``parent/<prefix>N`` for the first N above every existing one (nothing is created)."""
    return parent / f"{prefix}{max(_numbers(parent, prefix), default=-1) + 1}"


def _claim_numbered(parent: Path, prefix: str) -> Path:
    """Create and return the next free ``parent/<prefix>N``; two processes claiming at once get different folders."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = _next_numbered(parent, prefix)
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # another run claimed it between the listing and the mkdir
            continue


def next_version(root: Path) -> Path:
    """Return ``root/version_N`` for the first N above every existing version (nothing is created)."""
    return _next_numbered(root, "version_")


def claim_version(root: Path) -> Path:
    """Create and return the next free ``root/version_N``; two processes claiming at once get different folders."""
    try:
        return _claim_numbered(root, "version_")
    except OSError as error:
        existing = next(folder for folder in root.absolute().parents if folder.exists())
        if not existing.is_dir():
            raise OutputDirError(
                f"output folder {root.absolute()} cannot be created: {existing} is a file; change trainer.default_root_dir"
            ) from error
        raise OutputDirError(
            f"output folder {root.absolute()} is not writable ({error.strerror or error} in {existing}); fix its "
            f"permissions or change trainer.default_root_dir"
        ) from error


def hold_run_folder(folder: Path) -> int | None:
    """Create ``folder`` if needed and hold it for this process's fit; return the descriptor that holds it.

    Two fits given the same ``--run_name`` (or resuming one run) at once would write into one folder.
    The hold is an exclusive ``flock`` on the folder, which the system drops when the process ends
    (a kill -9 too), so a folder left by a stopped fit is free again; close the descriptor to let it
    go earlier. Returns None where the file system has no such locks: the folder is then not held.

    Args:
        folder: the run folder.

    Raises:
        ConfigurationError: another running fit holds the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return None
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise ConfigurationError(
            f"run folder {folder} is already in use by another fit; pick another --run_name (or, to resume that "
            f"run, wait until its fit has ended)"
        ) from None
    except OSError:  # a file system without flock on folders (some network mounts)
        os.close(descriptor)
        return None
    return descriptor


def point_latest(root: Path, run: Path | None) -> None:
    """Point ``root/latest`` at ``run`` (a folder in ``root``), or remove it for None; the switch is atomic."""
    link = root / LATEST
    if run is None:
        if link.is_symlink():
            link.unlink()
        return
    temporary = root / f".{LATEST}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    try:
        temporary.symlink_to(run.name, target_is_directory=True)
    except OSError:  # file systems without links (some Windows set-ups): `best`/`last` then find the run by time
        return
    os.replace(temporary, link)


def run_folder_of(checkpoint: Path) -> Path | None:
    """Return the training run folder a checkpoint file sits in (``<run>/checkpoints/x.ckpt``), or None."""
    for folder in checkpoint.absolute().parents[:2]:
        if is_run_folder(folder):
            return folder
    return None


def newest_run(root: Path) -> Path | None:
    """Return the run ``root/latest`` points at if it has a checkpoint, else the run in ``root`` with the newest checkpoint."""
    link = root / LATEST
    if link.is_dir() and is_run_folder(link) and any(link.glob("checkpoints/*.ckpt")):
        return link.resolve()
    runs = (
        [folder for folder in root.iterdir() if is_run_folder(folder) and not folder.is_symlink()]
        if root.is_dir()
        else []
    )
    times = {
        run: max(file.stat().st_mtime for file in run.glob("checkpoints/*.ckpt"))
        for run in runs
        if any(run.glob("checkpoints/*.ckpt"))
    }
    return max(times, key=times.get) if times else None


def newest_checkpoint(root: Path, which: str) -> Path:
    """Return the ``best`` or ``last`` checkpoint of the newest training run under ``root``.

    ``best`` is the ModelCheckpoint's best model as recorded in ``last.ckpt`` (so any ``filename``
    works), falling back to ``checkpoints/best.ckpt``.

    Args:
        root: the folder holding the run folders (``trainer.default_root_dir``).
        which: ``best`` or ``last``.
    """
    run = newest_run(root)
    if run is None:
        raise CheckpointError(
            f"--ckpt_path {which} looks for the newest run under {root} with a checkpoint, and there is none; train one first "
            f"(snn-lightning fit with the same config) or give the path of a .ckpt file"
        )
    last = _newest_last(run / "checkpoints")
    if which == "last":
        found = last if last.is_file() else None
    else:
        found = _best_recorded_in(last) if last.is_file() else None
        found = found or next(iter(sorted((run / "checkpoints").glob("best*.ckpt"))), None)
    if found is None:
        raise CheckpointError(
            f"the newest run {run} has no {which} checkpoint (its checkpoints/ holds "
            f"{', '.join(sorted(p.name for p in (run / 'checkpoints').glob('*.ckpt'))) or 'nothing'}); "
            f"give the path of a .ckpt file"
        )
    return found


def _newest_last(folder: Path) -> Path:
    """Return the ``last`` checkpoint in ``folder`` furthest trained: ``last.ckpt``, or a ``last-vN.ckpt`` beside it.

    Lightning adds ``last-vN.ckpt`` when ``last.ckpt`` is there but was not written by its callback (a
    run folder copied or moved by an earlier version), and then ``last.ckpt`` holds an older epoch.
    """
    found = [path for path in folder.glob("last*.ckpt") if re.fullmatch(r"last(-v\d+)?\.ckpt", path.name)]
    if len(found) < 2:
        return folder / "last.ckpt"
    steps = {path: torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"] for path in found}
    return max(found, key=lambda path: (steps[path], path.stat().st_mtime))


def _best_recorded_in(last: Path) -> Path | None:
    """Return the best checkpoint a ModelCheckpoint recorded in checkpoint ``last``, if that file is there."""
    checkpoint = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and state.get("best_model_path"):
            recorded = Path(state["best_model_path"])
            beside = last.parent / recorded.name  # the run folder may have been copied or moved since
            for candidate in (beside, recorded):
                if candidate.is_file():
                    return candidate
    return None


def evaluation_folder(parent: Path, subcommand: str) -> Path:
    """Create and return the next free ``parent/<subcommand>_N`` folder for one validate/test/predict command."""
    return _claim_numbered(parent, f"{subcommand}_")


def check_run_name(name: str) -> str:
    """Return ``name`` if it can name a run folder, else raise :class:`ConfigurationError`."""
    if not re.fullmatch(r"[\w.+-]+", name) or name in (".", "..", LATEST):
        raise ConfigurationError(
            f"run_name {name!r} cannot name a folder; use letters, digits and . _ + - (e.g. --run_name lr0.05)"
        )
    return name
