"""Errors a user can cause and fix; the CLI prints their message without a traceback."""

from __future__ import annotations

__all__ = ["SNNLightningError", "DatasetNotFoundError", "ConfigurationError"]


class SNNLightningError(Exception):
    """Base class of user-fixable errors: the message names the problem and the fix."""


class DatasetNotFoundError(SNNLightningError, FileNotFoundError):
    """A dataset is not on disk and cannot be downloaded; the message names the path and where to get it."""


class ConfigurationError(SNNLightningError, ValueError):
    """Two settings disagree or one is out of range; the message names the setting and the fix."""
