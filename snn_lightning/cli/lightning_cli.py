"""``SNNLightningCLI``: LightningCLI that links data and model settings, explains mistakes and adds the safety net.

Model and data are chosen by ``class_path`` in YAML (subclass mode). The data module's number of
classes and input channels are linked into the model, so neither is typed twice; giving one of
them on both sides with different values is an error. The number of time steps is the model's
alone (``--model.eval_time_steps 2`` evaluates a checkpoint on its first 2 steps).

Every run gets the safety net of :mod:`snn_lightning.callbacks.safety`: ``NaNGuard``, ``EpochSeed``
(exact resume) and atomic checkpoint writes. A ``fast_dev_run`` fit writes into a temporary folder
removed at its end, never into a run folder.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from importlib.metadata import version
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from snn_lightning.callbacks.predictions import PredictionWriter
from snn_lightning.callbacks.progress import EpochLines, RichProgress
from snn_lightning.callbacks.resumed_metrics import ResumedMetrics
from snn_lightning.callbacks.run_record import RunRecord
from snn_lightning.callbacks.run_summary import BestMetricSummary
from snn_lightning.callbacks.safety import AtomicCheckpointIO, EpochSeed, NaNGuard, check_output_dirs, latest_checkpoint
from snn_lightning.callbacks.save_config import LoggerSaveConfigCallback
from snn_lightning.callbacks.sigterm import SynchronizedSigterm
from snn_lightning.callbacks.slurm_requeue import SlurmRequeue
from snn_lightning.checkpoints import read_checkpoint, state_dict_mismatch
from snn_lightning.cli.checkpoint_settings import NEWEST_CKPT_PATHS, SPECIAL_CKPT_PATHS, stored_model_settings
from snn_lightning.cli.parse_errors import SNNArgumentParser
from snn_lightning.cli.quiet import drop_unset_wandb_anonymous, quiet_subcommand
from snn_lightning.cli.resume_checks import check_resume, does_not_fit
from snn_lightning.cli.run_checks import (
    check_cache_dir,
    check_data_before_wandb,
    check_sync_batchnorm,
    first_line,
    is_wandb_error,
    trainer_error,
)
from snn_lightning.cli.run_folders import RunPlacement, root_of
from snn_lightning.cli.settings import GivenSettings
from snn_lightning.errors import CheckpointError, ConfigurationError, SNNLightningError
from snn_lightning.run_outputs import wandb_offline_without_key
from snn_lightning.runs import RUN_DIR_VARIABLE, launch_rank, newest_checkpoint

__all__ = ["SNNLightningCLI"]

# Model settings the CLI links from the data module's attribute of the same name.
_LINKED_FROM_DATA = ("num_classes", "in_channels")
# The other commands `snn-lightning --help` lists; `main` runs them before LightningCLI's parsing.
_OTHER_COMMANDS = {"export": "Write a trained checkpoint as a NIR graph (`snn-lightning export --help`)."}
# Trainer settings that differ from Lightning's: no model summary (its FLOPs column reads 0 for our models;
# SNNClassifier prints parameters and MACs instead), and a logging interval shorter than the quickstarts' epochs.
_TRAINER_DEFAULTS = {"enable_model_summary": False, "log_every_n_steps": 10}


class SNNLightningCLI(LightningCLI):
    """LightningCLI that links data and model settings, explains mistakes in one line and runs with the safety callbacks."""

    def __init__(
        self,
        model_class: type[L.LightningModule] = L.LightningModule,
        datamodule_class: type[L.LightningDataModule] = L.LightningDataModule,
        *,
        subclass_mode_model: bool = True,
        subclass_mode_data: bool = True,
        parser_class: type[LightningArgumentParser] = SNNArgumentParser,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            model_class: base class of the models a config may choose by class_path.
            datamodule_class: base class of the data modules a config may choose by class_path.
            subclass_mode_model: choose the model by class_path (any subclass of model_class).
            subclass_mode_data: choose the data module by class_path (any subclass of datamodule_class).
            parser_class: the argument parser; the default turns parse errors into one-line ConfigurationErrors.
            **kwargs: the other arguments of ``LightningCLI`` (``args``, ``run``, ``trainer_defaults``, …); by default
                ``save_config_callback`` is ``LoggerSaveConfigCallback`` (config.yaml, and the config sent to the loggers)
                and ``trainer_defaults`` turn off the model summary and log every 10 steps.
        """
        self.given = GivenSettings()
        self.placement = RunPlacement()
        # The --ckpt_path checkpoint _parse_ckpt_path read, which before_fit checks again without a second read.
        self._checkpoint: dict[str, Any] | None = None
        kwargs.setdefault("save_config_callback", LoggerSaveConfigCallback)
        kwargs["trainer_defaults"] = {**_TRAINER_DEFAULTS, **(kwargs.get("trainer_defaults") or {})}
        try:
            super().__init__(
                model_class,
                datamodule_class,
                subclass_mode_model=subclass_mode_model,
                subclass_mode_data=subclass_mode_data,
                parser_class=parser_class,
                **kwargs,
            )
        except BaseException as error:
            self.placement.forget_failed_start(error)
            raise

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Return the top-level parser, named ``snn-lightning`` and with ``--version`` (jsonargparse prints the name first)."""
        kwargs.setdefault("prog", "snn-lightning")
        kwargs.setdefault("version", version("snn-lightning"))
        return super().init_parser(**kwargs)

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Add fit, validate, test and predict, and list the commands ``main`` runs itself (export) in the help."""
        super()._add_subcommands(parser, **kwargs)
        # LightningCLI keeps no handle on the subcommands action it created; jsonargparse stores it on the parser.
        for name, description in _OTHER_COMMANDS.items():
            parser._subcommands_action.add_subcommand(
                name, LightningArgumentParser(description=description), help=description
            )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="Folder of this fit under trainer.default_root_dir; null numbers it version_N (a SLURM or torchrun "
            "job: slurm_<job id> / torchrun_<run id>). Validate/test/predict write into the checkpoint's run folder.",
        )
        parser.add_argument(
            "--trusted_packages",
            type=list[str],
            default=[],
            help="Packages whose classes a checkpoint's stored settings may name, besides snn_lightning, torch, "
            "lightning and the packages of the classes your config names (e.g. [mylab]).",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Check the config files (present, valid YAML), record what the user set explicitly, then parse."""
        if args is None or isinstance(args, (list, tuple)):
            self.given = GivenSettings.read(list(sys.argv[1:] if args is None else args))
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Fill the model settings from the checkpoint's hyperparameters; settings on the command line win.

        Lightning's version knows no ``best``/``last`` in a new process, lets the checkpoint override
        the command line, imports any class a checkpoint names and fails with a raw traceback on an
        unreadable file.
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        ckpt_path = config.get("ckpt_path") if config else None
        if ckpt_path is not None and not str(ckpt_path).strip():
            raise ConfigurationError(
                f"--ckpt_path is empty; give the path of a .ckpt file or best / last (the newest run under "
                f"{root_of(config)})" + (", or leave it out to train afresh" if subcommand == "fit" else "")
            )
        if ckpt_path in NEWEST_CKPT_PATHS:  # in a new process Lightning knows no best or last model
            found = newest_checkpoint(root_of(config), ckpt_path)
            if launch_rank() == 0:
                print(f"--ckpt_path {ckpt_path}: {found}", file=sys.stderr)
            ckpt_path = config.ckpt_path = str(found)
        if not _is_checkpoint_file(ckpt_path):
            return
        checkpoint = self._checkpoint = read_checkpoint(ckpt_path, config.get("weights_only") is not False)
        model = stored_model_settings(checkpoint, config, self.given.command_line, ckpt_path)
        if model is None:
            return
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except ConfigurationError as error:
            raise CheckpointError(
                f"the model settings stored in checkpoint {ckpt_path} do not parse ({error}); it was written by "
                f"another version or class; pass the model settings in the config and a checkpoint of that model"
            ) from error

    def before_instantiate_classes(self) -> None:
        """Choose the run folder and wandb's mode."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        # The folder is new or this run's own (resumed, requeued). The same on every rank: Lightning's
        # config saving broadcasts only when it checks for an existing file, and ranks that disagree hang.
        self.save_config_kwargs["overwrite"] = True
        self.placement.choose(self.subcommand, config, self.given)
        if wandb_offline_without_key(config) and launch_rank() == 0:
            print(
                "wandb has no API key (WANDB_API_KEY or `wandb login`): logging offline; upload with `wandb sync`",
                file=sys.stderr,
            )

    def after_instantiate_classes(self) -> None:
        """Refuse ``model.num_classes`` / ``model.in_channels`` given with values other than the data module's."""
        for name in _LINKED_FROM_DATA:
            value = self.given.explicit.get(f"model.{name}")
            actual = getattr(self.datamodule, name, None)
            if value is not None and actual is not None and str(value) != str(actual):
                raise ConfigurationError(
                    f"model.{name} is {value} but the data module ({type(self.datamodule).__name__}) has {name} = "
                    f"{actual}; the CLI sets the model's {name} from the data, so drop model.{name} "
                    f"(or choose data that has {value})"
                )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[L.Callback]) -> L.Trainer:
        """Instantiate the trainer with a progress display unless the config chose one or none: a Rich bar in a
        terminal, one line per epoch when output goes to a file (a redrawn bar would fill it with escape codes)."""
        configured = (config.get("callbacks") or []) + callbacks
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in configured):
            callbacks = [*callbacks, RichProgress() if sys.stdout.isatty() else EpochLines()]
        try:
            return super()._instantiate_trainer(config, callbacks)
        except MisconfigurationException as error:
            raise trainer_error(error, config) from error

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Return the trainer with atomic checkpoint writes, ``RunRecord`` (for a new fit's run.json),
        ``ResumedMetrics`` (a fit keeps the CSV rows of the epochs it resumes after) and, unless
        configured, ``NaNGuard``, ``EpochSeed``, ``SynchronizedSigterm``, ``SlurmRequeue``, ``BestMetricSummary`` (with wandb) and
        ``PredictionWriter`` (for predict)."""
        trainer = super().instantiate_trainer(**kwargs)
        drop_unset_wandb_anonymous(trainer)
        if self.placement.record is not None:
            trainer.callbacks.append(RunRecord(self.placement.record))
        if self.subcommand == "fit":
            trainer.callbacks.append(ResumedMetrics.read(trainer.loggers))
        defaults = [NaNGuard, EpochSeed, SynchronizedSigterm, SlurmRequeue]
        if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            defaults.append(BestMetricSummary)
        if self.subcommand == "predict":
            defaults.append(PredictionWriter)
        for default in defaults:
            if not any(isinstance(callback, default) for callback in trainer.callbacks):
                trainer.callbacks.append(default())
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _check_run(self, stage: str, module: L.LightningModule | None) -> None:
        """Check the output folders (room for checkpoints of ``module`` when given), the frame-cache folder, the
        sync-BN setting and, before a wandb logger starts, the data."""
        check_output_dirs(self.trainer, module)
        check_cache_dir(self.datamodule)
        check_sync_batchnorm(self.trainer, self.config_init[self.subcommand].get("trainer", {}))
        check_data_before_wandb(self.trainer, self.datamodule, stage)

    def before_fit(self) -> None:
        """Refuse a resume that would train nothing or cannot restore its checkpoint, before the loggers and
        ``config.yaml`` touch its run folder; then check the run."""
        config = self.config_init[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if _is_checkpoint_file(ckpt_path):
            checkpoint = self._checkpoint or read_checkpoint(ckpt_path, config.get("weights_only") is not False)
            check_resume(self.trainer, self.model, checkpoint, str(ckpt_path))
        self._check_run("fit", self.model)

    def before_validate(self) -> None:
        self._check_run("validate", None)

    def before_test(self) -> None:
        self._check_run("test", None)

    def before_predict(self) -> None:
        self._check_run("predict", None)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the subcommand; a checkpoint of another model, a config.yaml in the way and a SIGTERM get one clear message."""
        os.environ[RUN_DIR_VARIABLE] = str(self.placement.folder.absolute())  # for the workers a DDP launch starts
        try:
            with quiet_subcommand(subcommand):
                super()._run_subcommand(subcommand)
        except SIGTERMException:
            self._report_sigterm()
            raise SystemExit(128 + signal.SIGTERM) from None
        except Exception as error:
            explained = _explained(error, self.config_init[subcommand].get("ckpt_path"), self.model, self.datamodule)
            if explained is error:
                raise
            raise explained from error
        finally:
            os.environ.pop(RUN_DIR_VARIABLE, None)
            self.placement.remove_throwaway()
            self.placement.release()

    def _report_sigterm(self) -> None:
        """Print where a run stopped by SIGTERM (or by SLURM after its requeue) resumes from (on rank 0)."""
        if not self.trainer.is_global_zero:
            return
        saved = latest_checkpoint(self.trainer)
        requeued = any(isinstance(callback, SlurmRequeue) and callback.requeued for callback in self.trainer.callbacks)
        if requeued:
            resume = f"the requeued job resumes from {saved}" if saved else "the requeued job starts afresh"
        else:
            resume = f"resume with --ckpt_path {saved}" if saved else "no checkpoint was written yet"
        print(
            f"stopped by SIGTERM in epoch {self.trainer.current_epoch} (global step {self.trainer.global_step}); {resume}",
            file=sys.stderr,
        )


def _is_checkpoint_file(ckpt_path: str | None) -> bool:
    """Return whether ``ckpt_path`` names a local file (not none, ``best``/``last``/``hpc``, a URL or a model registry)."""
    text = str(ckpt_path or "")
    return bool(text) and text not in SPECIAL_CKPT_PATHS and "://" not in text and not text.startswith("registry")


def _explained(
    error: Exception,
    ckpt_path: str | None,
    model: L.LightningModule | None = None,
    datamodule: L.LightningDataModule | None = None,
) -> Exception:
    """Return ``error`` of a running subcommand as a user-fixable error when it is one of the known mistakes, else itself."""
    if not isinstance(error, SNNLightningError) and is_wandb_error(error):
        return ConfigurationError(
            f"wandb could not start its run ({first_line(error)}); without network run it offline with "
            f"WANDB_MODE=offline (upload later with `wandb sync`), or log to CSV instead with "
            f"--trainer.logger lightning.pytorch.loggers.CSVLogger"
        )
    if not isinstance(error, RuntimeError):
        return error
    if isinstance(error, torch.OutOfMemoryError) or re.search(r"can't allocate memory|not enough memory", str(error)):
        # The [T, B, ...] activations (kept for backward in training) grow with both T and the batch size.
        eval_steps = getattr(model, "eval_time_steps", None)
        return ConfigurationError(
            f"out of memory with model.time_steps={getattr(model, 'time_steps', '?')}"
            + (f", model.eval_time_steps={eval_steps}" if eval_steps is not None else "")
            + f" and data.batch_size={getattr(datamodule, 'batch_size', '?')} ({first_line(error)}); lower "
            f"model.time_steps (or only for evaluation model.eval_time_steps) or data.batch_size, or keep less for "
            f"backward in training with model.checkpoint_blocks true / model.compact_spikes true"
        )
    existing = re.search(r"SaveConfigCallback expected (.*) to NOT exist", str(error))
    if existing:
        return ConfigurationError(
            f"{existing[1]} exists from an earlier run in the same folder; give this run its own folder "
            f"(trainer.default_root_dir, or a logger that numbers its versions) or delete that file"
        )
    if "Error(s) in loading state_dict" not in str(error):
        return error
    return does_not_fit(ckpt_path, state_dict_mismatch(str(error)))
