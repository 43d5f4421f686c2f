"""Checks the CLI runs before a command starts, so a setting that would fail late fails first with one clear line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from snn_lightning.data import StaticImageDataModule
from snn_lightning.errors import ConfigurationError

__all__ = ["check_cache_dir", "check_data_before_wandb", "check_sync_batchnorm", "first_line", "is_wandb_error"]


def first_line(error: BaseException) -> str:
    """Return the first line of ``error``'s message, or its class name when it has none.

    Args:
        error: any exception.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_wandb_error(error: BaseException | None) -> bool:
    """Return whether ``error`` or an error behind it was raised by wandb (no API key, no network, a refused login).

    Args:
        error: the error caught, followed through its ``__cause__`` / ``__context__`` chain.
    """
    while error is not None:
        if type(error).__module__.split(".")[0] == "wandb":
            return True
        error = error.__cause__ or error.__context__
    return False


def trainer_error(error: MisconfigurationException, config: dict[str, Any]) -> ConfigurationError:
    """Return Lightning's refusal of a trainer setting as one line naming the setting and the fix.

    Args:
        error: what Lightning raised while building the trainer.
        config: the trainer's settings.
    """
    message = first_line(error)
    if "gpu backend" in message or "accelerator is not available" in message:
        return ConfigurationError(
            f"trainer.accelerator is {config.get('accelerator')} but this machine has no such device "
            f"(torch.cuda.is_available() is {torch.cuda.is_available()}); use --trainer.accelerator cpu, or auto "
            f"(the GPU where there is one)"
        )
    named = re.search(r"`(\w+)`", message)
    setting = f"trainer.{named[1]}" if named else "a trainer setting"
    return ConfigurationError(
        f"{setting} is out of range ({message.replace('`', '')}); fix {setting} in the config or on the command line"
    )


def check_cache_dir(datamodule: L.LightningDataModule | None) -> None:
    """Refuse a ``cache_dir`` of the data module that is, or lies inside, a file (the frames are cached in its setup).

    Args:
        datamodule: the command's data module.
    """
    cache_dir = getattr(datamodule, "cache_dir", None)
    if not cache_dir or "://" in str(cache_dir):
        return
    folder = Path(cache_dir).expanduser().absolute()
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigurationError(
            f"data.cache_dir {folder} cannot hold the frame cache: {existing} is a file; set data.init_args.cache_dir "
            f"to a folder (null caches under <data.root>/frames_cache)"
        )


def check_sync_batchnorm(trainer: L.Trainer, trainer_config: dict[str, Any]) -> None:
    """Refuse ``trainer.sync_batchnorm`` for processes on CPUs, where torch's SyncBatchNorm does not run.

    Args:
        trainer: the command's trainer.
        trainer_config: the trainer's settings.
    """
    if (
        trainer_config.get("sync_batchnorm")
        and trainer.world_size > 1
        and isinstance(trainer.accelerator, CPUAccelerator)
    ):
        raise ConfigurationError(
            "trainer.sync_batchnorm is true but the processes run on CPUs, and torch's SyncBatchNorm runs on "
            "GPUs only; set trainer.sync_batchnorm: false on CPUs (each process then normalises its own batch)"
        )


def check_data_before_wandb(trainer: L.Trainer, datamodule: L.LightningDataModule | None, stage: str) -> None:
    """Read the images now when a wandb logger would otherwise start before the data is found missing.

    Lightning starts every logger's run before the data module's ``setup``, which is where a static
    image module without ``download`` finds its files missing, so a user without the data would see
    wandb's login error or leave a wandb run behind. Its setup only reads files and keeps the splits,
    so running it early costs nothing. Downloads, and event data (whose ``prepare_data`` reads the
    recordings), already fail before the loggers start.

    Args:
        trainer: the command's trainer, whose loggers are looked at.
        datamodule: the command's data module.
        stage: fit, validate, test or predict.
    """
    wandb = any(isinstance(logger, WandbLogger) for logger in trainer.loggers)
    if wandb and isinstance(datamodule, StaticImageDataModule) and not datamodule.download:
        datamodule.setup(stage)
