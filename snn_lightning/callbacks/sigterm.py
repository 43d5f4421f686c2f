"""A SIGTERM under DDP stops every rank at the same step, so no rank is left waiting in a collective."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["SignalHandlerCallback", "SynchronizedSigterm"]


class SignalHandlerCallback(L.Callback):
    """A callback that puts its own signal handler over the one Lightning registers for each run (Lightning restores it after).

    Lightning registers its handlers after the fit-start hooks, so subclasses install theirs in
    ``_take_over_the_handler``, which the first hook of every loop calls.
    """

    def _take_over_the_handler(self, trainer: L.Trainer) -> None:
        raise NotImplementedError

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_the_handler(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_the_handler(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_the_handler(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_the_handler(trainer)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_the_handler(trainer)


class SynchronizedSigterm(SignalHandlerCallback):
    """Under DDP, stop all ranks together after a SIGTERM reaches any of them: at the end of a training batch.

    Lightning 2.6's SIGTERM handler broadcasts a tensor from inside the handler, at whatever point
    the rank has reached, and each rank then stops at its own next check. When the signal lands
    while another rank waits in a collective (the gradient all-reduce), the ranks deadlock, or one
    rank exits while another still waits and dies with a long gloo traceback. In runs of several
    processes this callback replaces that handler with one that only notes the signal (and passes
    it on to the processes this one launched, as Lightning's does); the ranks agree on it with one
    all-reduce at the end of every training batch, where they run in step, and all raise Lightning's
    ``SIGTERMException`` there. ``validate``, ``test`` and ``predict`` stop at the end of their loop
    (their ranks may run one batch more or fewer, so no batch of theirs can hold a collective). One
    process keeps Lightning's handler. The CLI adds this callback to every run.
    """

    def __init__(self) -> None:
        self.received = False
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.received = False

    def _take_over_the_handler(self, trainer: L.Trainer) -> None:
        """Install this callback's SIGTERM handler over the one Lightning registered for the run (restored after it)."""
        if trainer.world_size < 2 or threading.current_thread() is not threading.main_thread():
            return
        self._trainer = trainer
        signal.signal(signal.SIGTERM, self._note_sigterm)

    def _note_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # No collective here: the handler runs wherever the main thread happens to be.
        launcher = self._trainer.strategy.launcher if self._trainer is not None else None
        if not self.received and launcher is not None:
            launcher.kill(signum)
        self.received = True

    def _stop_if_any_rank_received(self, trainer: L.Trainer) -> None:
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.received, all=False):
            raise SIGTERMException

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self._stop_if_any_rank_received(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # in fit, the next training batch checks
            self._stop_if_any_rank_received(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_any_rank_received(trainer)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_any_rank_received(trainer)
