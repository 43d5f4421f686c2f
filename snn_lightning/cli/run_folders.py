"""Which folder a command writes into: a fit's run folder, an evaluation folder in it, or a throwaway smoke-test folder.

The layout itself (``version_N``, ``latest``, ``run.json``) is :mod:`snn_lightning.runs`; this module
decides, for one parsed command, which of those folders it uses and undoes a fit that failed to start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from snn_lightning.cli.settings import GivenSettings
from snn_lightning.errors import ConfigurationError, NonFiniteValueError, user_error
from snn_lightning.run_outputs import place_outputs, tag_wandb_runs
from snn_lightning.runs import (
    RUN_DIR_VARIABLE,
    RunFolder,
    check_run_name,
    claim_version,
    evaluation_folder,
    hold_run_folder,
    job_run_name,
    launch_rank,
    newest_run,
    next_version,
    point_latest,
    run_folder_of,
)

__all__ = ["RunPlacement", "root_of"]


def root_of(config: Any) -> Path:
    """Return the folder holding the run folders: ``trainer.default_root_dir`` (the working folder if unset).

    Args:
        config: the subcommand's parsed config.
    """
    return Path(config.trainer.get("default_root_dir") or ".").expanduser()


def _training_folder(config: Any, create: bool) -> tuple[Path, bool]:
    """Return the fit's run folder and whether it continues an earlier run there.

    The folder Lightning's DDP launcher passes to its workers, else the resumed checkpoint's run,
    else the one ``run_name`` (or the SLURM/torchrun job) names, else the next ``version_N``.
    """
    if os.environ.get(RUN_DIR_VARIABLE):
        return Path(os.environ[RUN_DIR_VARIABLE]), True
    ckpt_path = config.get("ckpt_path")
    if ckpt_path and ckpt_path != "hpc" and "://" not in str(ckpt_path):
        resumed = run_folder_of(Path(ckpt_path))
        if resumed is not None:
            return resumed, True
    name = config.get("run_name") or job_run_name()
    if name is None:
        return (claim_version if create else next_version)(root_of(config)), False
    folder = root_of(config) / check_run_name(name)
    saved = sorted(folder.glob("checkpoints/*.ckpt")) + sorted(folder.glob("hpc_ckpt_*.ckpt"))
    if not saved:
        return folder, folder.is_dir()
    if os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
        raise ConfigurationError(
            f"run folder {folder} holds checkpoints of an earlier run; continue it with --ckpt_path "
            f"{folder / 'checkpoints' / 'last.ckpt'} or give this run another --run_name"
        )
    last = folder / "checkpoints" / "last.ckpt"
    if ckpt_path is None and last.is_file():
        # Requeued (by SlurmRequeue or after a hard kill): the latest epoch's end, never a mid-epoch hpc_ckpt.
        config.ckpt_path = str(last)
    return folder, True


class RunPlacement:
    """The folder one command writes into, and what it created there, so that a failed start can be undone."""

    def __init__(self) -> None:
        # The folder every output of the command goes into; None until chosen.
        self.folder: Path | None = None
        # The training run folder this command created and where `latest` pointed before, to undo a failed start.
        self.created_run: tuple[Path, Path | None] | None = None
        # The temporary folder a fast_dev_run writes into instead of a run folder, removed after the run.
        self.throwaway: Path | None = None
        # The training run whose run.json this command writes once its loggers have started; None for none.
        self.record: RunFolder | None = None
        # The open folder descriptor by which this fit holds its run folder against other fits; None for none.
        self.hold: int | None = None

    def choose(self, subcommand: str | None, config: Any, given: GivenSettings) -> Path:
        """Point every output of the command into its folder, tag its wandb run and return the folder.

        Args:
            subcommand: fit, validate, test or predict; None when the CLI runs no subcommand (``run=False``).
            config: the subcommand's parsed config (changed in place).
            given: the settings the user gave, which are kept.
        """
        create = subcommand is not None and launch_rank() == 0
        if subcommand in (None, "fit") and config.trainer.get("fast_dev_run"):
            # A smoke test: Lightning's ModelCheckpoint still writes last.ckpt at its end, so it gets a
            # folder of its own, and neither a run's checkpoints nor `latest` see its one-step model.
            folder = os.environ.get(RUN_DIR_VARIABLE)
            if folder is None:
                folder = self.throwaway = Path(tempfile.mkdtemp(prefix="snn-lightning-fast_dev_run-"))
            self.folder = Path(folder)
            place_outputs(config, self.folder, given.explicit, given.roots)
            return self.folder
        if subcommand in (None, "fit"):
            folder, continued = _training_folder(config, create)
            run = RunFolder.read(folder)
            if create and not os.environ.get(RUN_DIR_VARIABLE):
                # Held before anything else is written: a fit refused here must not undo the holder's folder.
                self.hold = hold_run_folder(folder)
                self.record = run  # run.json is written by the RunRecord callback, after the loggers' start
                if not continued:
                    self.created_run = (folder, newest_run(root_of(config)))
                    point_latest(root_of(config), folder)
            place_outputs(config, folder, given.explicit, given.roots)
            tag_wandb_runs(config, run, "fit", run.name, resumable=True, explicit=given.explicit)
            self.folder = folder
            return folder
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path:
            raise ConfigurationError(
                f"{subcommand} evaluates a trained model, and no --ckpt_path was given; pass --ckpt_path best or last "
                f"(the newest run under {root_of(config)}) or the path of a .ckpt file"
            )
        training = run_folder_of(Path(ckpt_path)) if "://" not in str(ckpt_path) else None
        parent = training or root_of(config)
        job = job_run_name()
        if os.environ.get(RUN_DIR_VARIABLE):
            folder = Path(os.environ[RUN_DIR_VARIABLE])
        elif job:
            folder = parent / f"{subcommand}_{job}"
        else:
            folder = evaluation_folder(parent, subcommand) if create else parent / f"{subcommand}_0"
        run = RunFolder.read(training) if training else None
        place_outputs(config, folder, given.explicit, given.roots)
        name = f"{run.name}/{folder.name}" if run else f"{parent.name}/{folder.name}"
        tag_wandb_runs(config, run, subcommand, name, resumable=False, explicit=given.explicit)
        self.folder = folder
        return folder

    def remove_throwaway(self) -> None:
        """Remove the temporary folder of a fast_dev_run, if there is one."""
        if self.throwaway is not None:
            shutil.rmtree(self.throwaway, ignore_errors=True)

    def release(self) -> None:
        """Let go of the run folder this fit holds (the fit has ended), so another fit may use it."""
        if self.hold is not None:
            os.close(self.hold)
            self.hold = None

    def forget_failed_start(self, error: BaseException) -> None:
        """Remove the run folder this command created when it stopped before writing a checkpoint (a NaN loss or input keeps its logs).

        Args:
            error: the error that stopped the command.
        """
        self.remove_throwaway()
        self.release()
        if self.created_run is None or isinstance(user_error(error), NonFiniteValueError):
            return
        folder, previous = self.created_run
        if folder.is_dir() and not any(folder.rglob("*.ckpt")):
            shutil.rmtree(folder, ignore_errors=True)
            point_latest(folder.parent, previous)
            for parent in folder.absolute().parents:  # the folders this run created above it, if now empty
                if parent == Path.cwd() or any(parent.iterdir()):
                    break
                parent.rmdir()
