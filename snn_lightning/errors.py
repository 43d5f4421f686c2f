"""Errors a user can cause and fix; the CLI prints their message without a traceback."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "SNNLightningError",
    "DatasetNotFoundError",
    "ConfigurationError",
    "CheckpointError",
    "NonFiniteValueError",
    "NonFiniteLossError",
    "OutputDirError",
    "missing_file_reason",
    "user_error",
]


class SNNLightningError(Exception):
    """Base class of user-fixable errors: the message names the problem and the fix."""


class DatasetNotFoundError(SNNLightningError, FileNotFoundError):
    """A dataset is not on disk and cannot be downloaded; the message names the path and where to get it."""


class ConfigurationError(SNNLightningError, ValueError):
    """Two settings disagree or one is out of range; the message names the setting and the fix."""


class CheckpointError(SNNLightningError, ValueError):
    """A checkpoint is missing, unreadable or does not fit the configured model; the message names the file and the fix."""


class NonFiniteValueError(SNNLightningError, FloatingPointError):
    """A training batch's inputs, a parameter or a BatchNorm statistic became NaN or infinite; the message names the batch, the tensor and the last checkpoint."""


class NonFiniteLossError(NonFiniteValueError):
    """The training loss became NaN or infinite; the message names the step, the loss terms and the last checkpoint."""


class OutputDirError(SNNLightningError, OSError):
    """A log or checkpoint folder cannot be written or its disk is nearly full; the message names the folder and the setting."""


def user_error(error: BaseException | None) -> SNNLightningError | None:
    """Return the user-fixable error behind ``error`` (jsonargparse and Lightning wrap errors raised inside them), or None.

    Args:
        error: the error caught, followed through its ``__cause__`` / ``__context__`` chain.
    """
    while error is not None:
        if isinstance(error, SNNLightningError):
            return error
        error = error.__cause__ or error.__context__
    return None


def missing_file_reason(path: Path, patterns: tuple[str, ...] = ()) -> str:
    """Return why the file ``path`` cannot be read: ``is a folder, not a file (it holds …)`` or ``does not exist``.

    Args:
        path: the file a setting names.
        patterns: globs, relative to a folder ``path``, of the files in it the user probably meant (``*.ckpt``).
    """
    if not path.is_dir():
        return "does not exist"
    found = sorted(str(file.relative_to(path)) for pattern in patterns for file in path.glob(pattern))
    holds = f" (it holds {', '.join(found[:3])}{', …' if len(found) > 3 else ''})" if found else ""
    return f"is a folder, not a file{holds}"
