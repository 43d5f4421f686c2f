"""Keep out of a normal run's output the library messages that tell the user nothing to act on."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import lightning as L
from lightning.pytorch.loggers import WandbLogger

__all__ = ["drop_unset_wandb_anonymous", "finish_wandb_runs", "quiet_library_output", "quiet_subcommand"]


# Lightning's info lines that say nothing to act on: an advert, and a checkpoint path that its next line
# ("Loaded model weights …", "Restored all states …") repeats.
_DROPPED_INFO = ("litlogger", "Restoring states from the checkpoint path at")


class _DropMessages(logging.Filter):
    """Drop the log records whose message contains one of ``texts``."""

    def __init__(self, texts: tuple[str, ...]) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


def quiet_library_output() -> None:
    """Hide Lightning's info lines in ``_DROPPED_INFO`` and the LeafSpec FutureWarning torch raises inside Lightning's ``_pytree``."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in rank_zero.filters):
        rank_zero.addFilter(_DropMessages(_DROPPED_INFO))
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )


@contextlib.contextmanager
def quiet_subcommand(subcommand: str) -> Iterator[None]:
    """Run ``subcommand`` without Lightning's warning that an evaluation does not reload the best scores of fit.

    validate, test and predict restore the training ModelCheckpoint's state while writing into their own
    folder; the scores it leaves out matter only to a fit that continues.
    """
    with warnings.catch_warnings():
        if subcommand != "fit":
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
        yield


def drop_unset_wandb_anonymous(trainer: L.Trainer) -> None:
    """Leave ``anonymous`` out of each WandbLogger's ``wandb.init`` arguments when the user did not set it.

    Lightning passes ``anonymous=None`` by default, which wandb takes for a deprecated setting given
    and warns about on every run.
    """
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._wandb_init.get("anonymous", False) is None:
            del logger._wandb_init["anonymous"]


def finish_wandb_runs(trainer: L.Trainer) -> None:
    """Finish the wandb runs the trainer's loggers started, so that wandb's closing lines come before exit.

    Left to wandb's exit hook they are printed with colour codes even into a log file.
    """
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
