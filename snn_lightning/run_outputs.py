"""Point a parsed CLI config's outputs (root folder, loggers, checkpoint folders) into one run folder.

A setting the user gave in a config file or on the command line is kept; only the ones left at
their defaults are filled (and a logger ``save_dir`` equal to ``default_root_dir``, as the shipped
configs write it), so ``trainer.default_root_dir`` (or ``run_name``) moves the whole run. Without a
wandb API key, the wandb loggers are sent offline (:func:`wandb_offline_without_key`).
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from snn_lightning.class_paths import class_at
from snn_lightning.runs import RunFolder

__all__ = ["place_outputs", "tag_wandb_runs", "wandb_offline_without_key"]


def _instances(setting: Any, base: type) -> Iterator[Namespace]:
    """Yield the ``class_path``/``init_args`` entries of ``setting`` (one or a list) whose class derives from ``base``."""
    for entry in setting if isinstance(setting, list) else [setting]:
        if isinstance(entry, Namespace) and "class_path" in entry:
            cls = class_at(entry.class_path)
            if cls is not None and issubclass(cls, base):
                entry.init_args = entry.get("init_args") or Namespace()
                yield entry


def place_outputs(config: Namespace, folder: Path, explicit: dict[str, Any], roots: set[Path]) -> None:
    """Write every output of ``config`` into ``folder``: root dir, logger folders and names, checkpoint folders.

    Args:
        config: the subcommand's parsed config (changed in place).
        folder: the run (or evaluation) folder.
        explicit: dotted settings the user gave (``trainer.logger.save_dir``); these are kept.
        roots: every value the config files and command line gave ``trainer.default_root_dir``; a logger
            ``save_dir`` equal to one of them (CSVLogger requires one) means the run folder too.
    """
    config.trainer.default_root_dir = str(folder)
    single_logger = not isinstance(config.trainer.get("logger"), list)
    for logger in _instances(config.trainer.get("logger"), (CSVLogger, TensorBoardLogger, WandbLogger)):
        given = {key for key in logger.init_args.keys() if single_logger and f"trainer.logger.{key}" in explicit}
        save_dir = logger.init_args.get("save_dir")
        if "save_dir" not in given or save_dir is None or Path(save_dir).expanduser().absolute() in roots:
            logger.init_args.save_dir = str(folder)
            given.discard("save_dir")
        cls = class_at(logger.class_path)
        if issubclass(cls, (CSVLogger, TensorBoardLogger)):  # metrics.csv / events straight in the run folder
            for key in {"name", "version"} - given:
                logger.init_args[key] = ""
    for checkpoint in _instances(config.trainer.get("callbacks") or [], ModelCheckpoint):
        if checkpoint.init_args.get("dirpath") is None:
            checkpoint.init_args.dirpath = str(folder / "checkpoints")


def tag_wandb_runs(
    config: Namespace, run: RunFolder | None, job_type: str, name: str, resumable: bool, explicit: dict[str, Any]
) -> None:
    """Give each wandb logger of ``config`` the run's group, the job type and a name, and for fit the run's id.

    Args:
        config: the subcommand's parsed config (changed in place).
        run: the training run the command belongs to; None for a checkpoint from outside any run folder.
        job_type: ``fit``, ``validate``, ``test`` or ``predict``.
        name: the wandb run's display name.
        resumable: give the logger the run's id with ``resume: allow``, so a resumed or requeued fit continues it.
        explicit: dotted settings the user gave; these are kept.
    """
    single_logger = not isinstance(config.trainer.get("logger"), list)
    for logger in _instances(config.trainer.get("logger"), WandbLogger):
        settings = {"job_type": job_type, "name": name}
        if run is not None:
            settings["group"] = run.group
        if resumable and run is not None:
            settings.update(id=run.id, resume="allow")
        for key, value in settings.items():
            if not (single_logger and f"trainer.logger.{key}" in explicit):
                logger.init_args[key] = value


def _wandb_api_key_known() -> bool:
    """Return whether wandb can log in: ``WANDB_API_KEY`` is set or the netrc file has an entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):  # no netrc file, or one wandb could not read either
        return False


def wandb_offline_without_key(config: Namespace) -> bool:
    """Set ``WANDB_MODE=offline`` when ``config`` logs to wandb online and wandb has no API key; return whether it did.

    Without a key an online wandb run stops at its start with a long ``UsageError``; offline, the run
    is written into the run folder (``wandb sync`` uploads it later). A ``WANDB_MODE`` the user set
    (``offline``, ``disabled`` or ``online``, which then fails with wandb's own message) is kept. The
    variable, not the loggers' ``offline``, is set: Lightning refuses ``offline`` with ``log_model``,
    and DDP's processes inherit it.

    Args:
        config: the subcommand's parsed config.
    """
    online = [
        logger
        for logger in _instances(config.trainer.get("logger"), WandbLogger)
        if not logger.init_args.get("offline")
    ]
    if not online or os.environ.get("WANDB_MODE") or _wandb_api_key_known():
        return False
    os.environ["WANDB_MODE"] = "offline"
    return True
