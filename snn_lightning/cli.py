"""The ``snn-lightning`` command: LightningCLI with fit / validate / test / predict, and export.

    snn-lightning fit --config configs/quickstart.yaml
    snn-lightning test --config configs/quickstart.yaml --ckpt_path last --model.time_steps 2
    snn-lightning export --config configs/quickstart.yaml --ckpt_path logs/quickstart/latest/checkpoints/best.ckpt --format nir

``export`` (:mod:`snn_lightning.export.command`) builds the model from the config as ``fit`` does
and writes the checkpoint's network as a NIR graph.

Model and data are chosen by ``class_path`` in YAML (subclass mode). The data module's number of
classes and input channels are linked into the model, and the model's time steps into the data,
so none of them is typed twice; giving one of them on both sides with different values is an error.
Testing an event-data checkpoint at fewer steps (``--model.time_steps 2``) feeds the model the
first 2 frames of the binning it was trained with, which the CLI reads from the checkpoint
(``--data.fewer_steps rebin`` bins each recording into 2 instead; see ``EventDataModule``).

A mistake the user can fix (a config file that is missing, empty or not YAML, an unknown or mistyped
setting, a trainer setting Lightning refuses, a GPU accelerator without a GPU, an empty or missing
``--ckpt_path``, a checkpoint that does not fit the model, an unwritable log folder, a frame-cache
folder that is a file, wandb without login or network, a loss that turns NaN) prints one
``error: …`` line naming the setting and the fix, and exits with status 2. A ``fast_dev_run`` fit
writes into a temporary folder removed at its end, never into a run folder.
Every run also gets the safety net of :mod:`snn_lightning.callbacks.safety`: ``NaNGuard``,
``EpochSeed`` (exact resume) and atomic checkpoint writes.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from snn_lightning.callbacks.predictions import PredictionWriter
from snn_lightning.callbacks.run_summary import BestMetricSummary
from snn_lightning.callbacks.safety import AtomicCheckpointIO, EpochSeed, NaNGuard, check_output_dirs, latest_checkpoint
from snn_lightning.callbacks.save_config import LoggerSaveConfigCallback
from snn_lightning.callbacks.sigterm import SynchronizedSigterm
from snn_lightning.errors import CheckpointError, ConfigurationError, NonFiniteLossError, SNNLightningError
from snn_lightning.run_outputs import place_outputs, tag_wandb_runs
from snn_lightning.runs import (
    RUN_DIR_VARIABLE,
    RunFolder,
    check_run_name,
    claim_version,
    evaluation_folder,
    job_run_name,
    launch_rank,
    newest_checkpoint,
    newest_run,
    next_version,
    point_latest,
    run_folder_of,
)

__all__ = ["SNNArgumentParser", "SNNLightningCLI", "main", "read_checkpoint"]

# ckpt_path values that name the newest run's checkpoint under trainer.default_root_dir.
_NEWEST_CKPT_PATHS = ("best", "last")
# ckpt_path values Lightning resolves itself rather than reading a file.
_SPECIAL_CKPT_PATHS = ("best", "last", "hpc")
# Packages whose classes a checkpoint's stored settings may name: a checkpoint naming any other
# class (which jsonargparse would import, running its module) is refused.
_TRUSTED_PACKAGES = ("snn_lightning", "torch", "lightning")
# Model settings the CLI links from the data module's attribute of the same name.
_LINKED_FROM_DATA = ("num_classes", "in_channels")


class SNNArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line naming the setting and the fix (a :class:`ConfigurationError`)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Raise :class:`ConfigurationError` with ``message`` made concise; internal parsers keep jsonargparse's behaviour."""
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        raise ConfigurationError(explain_parse_error(message, parser)) from ex


def _suggest(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean X?)"`` for the closest of ``choices`` to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _class_arguments(class_path: str) -> list[str]:
    """Return the init argument names of the class at ``class_path`` as jsonargparse sees them."""
    module_name, _, class_name = class_path.rpartition(".")
    try:  # the class the user's config named, which jsonargparse has imported already
        cls = getattr(importlib.import_module(module_name), class_name)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, fail_untyped=False)
    except (ImportError, AttributeError, ValueError):
        return []
    return [key for key in parser.get_defaults().keys() if "." not in key]


def _type_name(expected: str) -> str:
    """Return jsonargparse's ``<class 'int'>`` / ``typing.Literal['a', 'b']`` as ``int`` / ``one of a, b``."""
    literal = re.fullmatch(r"typing\.Literal\[(.*)\]", expected)
    if literal:
        return "one of " + ", ".join(choice.strip(" '\"") for choice in literal[1].split(","))
    return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", expected).replace("NoneType", "null")


def explain_parse_error(message: str, parser: ArgumentParser) -> str:
    """Return jsonargparse's multi-line ``message`` as one line naming the setting, what was wrong and the fix."""
    subcommand = parser.prog.split()[-1] if " " in parser.prog else ""
    help_hint = f"; `snn-lightning {subcommand + ' ' if subcommand else ''}--help` lists the settings"
    outer = re.match(r'Parser key "([\w.]+)"', message)
    group = outer[1] if outer else ""
    class_path = re.search(r"Problem with given class_path '([\w.]+)'", message)
    unknown_option = re.search(r"Option '(\w+)' is not accepted", message)
    if class_path and unknown_option:
        arguments = _class_arguments(class_path[1])
        return (
            f"{group}.init_args.{unknown_option[1]} is not an argument of {class_path[1]}"
            f"{_suggest(unknown_option[1], arguments)}; its arguments are {', '.join(arguments)}"
        )
    unknown = re.search(r"unrecognized arguments: --?([\w.]+)|does not accept option '([\w.]+)'", message)
    if unknown:
        key = unknown[1] or unknown[2]
        keys = list(parser.get_defaults().keys())
        return f"unknown setting {key}{_suggest(key, keys) or _suggest(key.split('.')[0], keys)}{help_hint}"
    typed = re.search(r'Parser key "(\w+)":\s+Expected an? (.+?)\. Got value: (.*)', message)
    if typed:
        key = f"{group}.init_args.{typed[1]}" if class_path else typed[1]
        expected = _type_name(typed[2])
        choices = (
            [c.strip() for c in expected.removeprefix("one of ").split(",")] if expected.startswith("one of ") else []
        )
        return f"{key} must be {expected}, got {typed[3]!r}{_suggest(typed[3], choices)}"
    union = re.search(r"Subtypes: \[(.*?)\].*Given value: (.*)", message, re.DOTALL)
    if outer and union and "class_path" not in message:
        expected = " or ".join(_type_name(name.strip()) for name in union[1].split(", "))
        return f"{group} must be {expected}, got {union[2].strip()!r}"
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        options = [option.strip(" '") for option in choice[2].split(",")]
        return f"unknown subcommand {choice[1]!r}{_suggest(choice[1], options)}; choose from {', '.join(options)}"
    boilerplate = (
        "Does not validate against any",
        "Subtypes:",
        "Errors:",
        "Given value type:",
        "- Expected a <class 'NoneType'>",
    )
    lines = [
        line.strip(" -") for line in message.splitlines() if line.strip() and not line.strip().startswith(boilerplate)
    ]
    return " ".join(lines) + help_hint


def _config_files(argv: list[str]) -> list[str]:
    """Return the values given to ``--config`` / ``-c`` in ``argv``."""
    files = []
    for index, token in enumerate(argv):
        if token in ("--config", "-c") and index + 1 < len(argv):
            files.append(argv[index + 1])
        elif token.startswith("--config="):
            files.append(token.partition("=")[2])
    return files


def _load_config_file(value: str) -> dict[str, Any]:
    """Return the mapping in config file ``value`` (or inline YAML), raising one clear error if it is missing or not YAML."""
    path = Path(value)
    if not path.is_file():
        try:  # jsonargparse also takes the settings themselves: --config "trainer: {max_epochs: 1}"
            inline = yaml.safe_load(value)
        except yaml.YAMLError:
            inline = None
        if isinstance(inline, dict):
            return inline
        raise ConfigurationError(
            f"config file {path.absolute()} does not exist; check the path (the shipped configs are in configs/, "
            f"e.g. configs/quickstart.yaml)"
        )
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = getattr(error, "context", None)
        context_mark = getattr(error, "context_mark", None)
        started = f" started at line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigurationError(
            f"config file {path} is not valid YAML{where}: {problem}"
            + (f" ({context}{started})" if context else "")
            + "; fix the syntax there"
        ) from error
    if content is None:
        raise ConfigurationError(
            f"config file {path} is empty (no settings); fill it (e.g. start from configs/quickstart.yaml) or drop that --config"
        )
    if not isinstance(content, dict):
        raise ConfigurationError(
            f"config file {path} holds a {type(content).__name__}, not a mapping of settings; start it with e.g. `trainer:`"
        )
    return content


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return nested settings as dotted keys without ``init_args`` (``model.init_args.time_steps`` → ``model.time_steps``)."""
    flat = {}
    for key, value in config.items():
        name = prefix if key == "init_args" else f"{prefix}{key}."
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name.rstrip(".")] = value
    return flat


def _command_line_settings(argv: list[str]) -> dict[str, str]:
    """Return the ``--key value`` / ``--key=value`` settings of ``argv`` as dotted keys without ``init_args``."""
    settings = {}
    for index, token in enumerate(argv):
        if not token.startswith("--") or token.startswith("--config"):
            continue
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
                continue
            value = argv[index + 1]
        settings[key.replace(".init_args.", ".")] = value
    return settings


def read_checkpoint(path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """Return the Lightning checkpoint at ``path`` (on the CPU), raising :class:`CheckpointError` with the fix when it cannot be used.

    Args:
        path: the ``.ckpt`` file.
        weights_only: refuse pickled Python objects (``torch.load(weights_only=True)``); turn off only for files you trust.
    """
    file = Path(path).expanduser().absolute()
    if not file.is_file():
        raise CheckpointError(
            f"checkpoint {file} does not exist; give the path of a .ckpt file (e.g. "
            f"logs/quickstart/latest/checkpoints/last.ckpt) or `last` / `best` for the newest run's checkpoint"
        )
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as error:
        first_sentence = (
            str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        )
        if weights_only and "weights_only" in str(error):
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
            raise CheckpointError(
                f"checkpoint {file} holds a pickled Python object{f' ({found[1]})' if found else ''}, which loading "
                f"with weights_only refuses, as it could run code; a checkpoint written by this project holds only "
                f"tensors and plain values; if you trust the file, pass --weights_only false"
            ) from error
        raise CheckpointError(
            f"checkpoint {file} cannot be read ({type(error).__name__}: {first_sentence}): it is truncated or not a "
            f"PyTorch checkpoint; use another checkpoint of the run (checkpoints are written atomically, so "
            f"last.ckpt of a killed run is whole)"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"checkpoint {file} is not a Lightning checkpoint (no state_dict); give a .ckpt written by snn-lightning"
        )
    return checkpoint


def _named_classes(settings: Any, where: str = "model") -> list[tuple[str, str]]:
    """Return ``(class path, setting)`` for every ``class_path`` named in ``settings`` (nested dicts and lists)."""
    found = []
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key in ("class_path", "_class_path"):
                found.append((str(value), where))
            found += _named_classes(value, where if key in ("init_args", "dict_kwargs") else f"{where}.{key}")
    elif isinstance(settings, list):
        for index, value in enumerate(settings):
            found += _named_classes(value, f"{where}[{index}]")
    return found


def _untrusted_classes(settings: Any, trusted: Iterable[str]) -> list[str]:
    """Return ``"<class path> (at <setting>)"`` for every class named in ``settings`` outside the ``trusted`` packages."""
    trusted = tuple(trusted)
    return [f"{path} (at {where})" for path, where in _named_classes(settings) if path.split(".")[0] not in trusted]


def _state_dict_mismatch(message: str) -> str:
    """Return a short summary of torch's ``Error(s) in loading state_dict`` message: shapes, missing and unexpected keys."""
    shapes = re.findall(
        r"size mismatch for ([\w.]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, "
        r"the shape in current model is torch\.Size\((\[[^\]]*\])\)",
        message,
    )
    parts = []
    if shapes:
        key, saved, model = shapes[0]
        more = ", …" if len(shapes) > 1 else ""
        parts.append(
            f"{len(shapes)} tensors differ in shape ({key}: {saved} in the checkpoint, {model} in the model{more})"
        )
    for label in ("Missing", "Unexpected"):
        found = re.search(rf"{label} key\(s\) in state_dict: (.*?)\.\s*$", message, re.MULTILINE)
        if found:
            keys = re.findall(r'"([^"]+)"', found[1])
            parts.append(f"{len(keys)} {label.lower()} keys ({', '.join(keys[:2])}{', …' if len(keys) > 2 else ''})")
    return "; ".join(parts) or message.strip().splitlines()[0]


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
                ``save_config_callback`` is ``LoggerSaveConfigCallback`` (config.yaml, and the config sent to the loggers).
        """
        self.command_line: dict[str, str] = {}
        self.explicit: dict[str, Any] = {}
        # Every value given to trainer.default_root_dir (a logger save_dir equal to one is the run folder).
        self._roots: set[Any] = set()
        # The training run folder this command created and where `latest` pointed before, to undo a failed start.
        self._created_run: tuple[Path, Path | None] | None = None
        # The temporary folder a fast_dev_run writes into instead of a run folder, removed after the run.
        self._throwaway: Path | None = None
        kwargs.setdefault("save_config_callback", LoggerSaveConfigCallback)
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
            self._forget_failed_start(error)
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")
        # Model -> data, so `--model.time_steps 2` at evaluation also reaches the event data (see its fewer_steps).
        parser.link_arguments("model.init_args.time_steps", "data.init_args.time_steps", apply_on="parse")
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
            argv = list(sys.argv[1:] if args is None else args)
            for value in _config_files(argv):
                settings = _flatten(_load_config_file(value))
                self.explicit.update(settings)
                self._roots.add(settings.get("trainer.default_root_dir"))
            self.command_line = _command_line_settings(argv)
            self.explicit.update(self.command_line)
            self._roots.add(self.command_line.get("trainer.default_root_dir"))
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Fill the model settings from the checkpoint's hyperparameters; settings on the command line win.

        Lightning's version lets the checkpoint override even ``--model.time_steps 2`` given to
        evaluate at fewer steps, and fails with a raw traceback on an unreadable file.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path is not None and not str(ckpt_path).strip():
            raise ConfigurationError(
                f"--ckpt_path is empty; give the path of a .ckpt file or best / last (the newest run under "
                f"{self._root(self.config[subcommand])})"
                + (", or leave it out to train afresh" if subcommand == "fit" else "")
            )
        if ckpt_path in _NEWEST_CKPT_PATHS:  # in a new process Lightning knows no best or last model
            found = newest_checkpoint(self._root(self.config[subcommand]), ckpt_path)
            if launch_rank() == 0:
                print(f"--ckpt_path {ckpt_path}: {found}", file=sys.stderr)
            ckpt_path = self.config[subcommand].ckpt_path = str(found)
        if (
            not ckpt_path
            or str(ckpt_path) in _SPECIAL_CKPT_PATHS
            or "://" in str(ckpt_path)
            or str(ckpt_path).startswith("registry")
        ):
            return
        weights_only = self.config[subcommand].get("weights_only") is not False
        checkpoint = read_checkpoint(ckpt_path, weights_only)
        if subcommand != "fit":
            self._take_trained_binning(self.config[subcommand], checkpoint)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        for key in self.command_line:
            if key.startswith("model."):
                hparams.pop(key.removeprefix("model."), None)
        if not hparams:
            return
        config = self.config[subcommand]
        chosen = {path.split(".")[0] for path, _ in _named_classes(config.clone().as_dict())}
        trusted = (*_TRUSTED_PACKAGES, *sorted(chosen), *config.get("trusted_packages", []))
        untrusted = _untrusted_classes(hparams, trusted)
        if untrusted:
            package = untrusted[0].split(".")[0]
            raise CheckpointError(
                f"checkpoint {ckpt_path} names the class {untrusted[0]}; the CLI takes classes named by a checkpoint only "
                f"from {', '.join(trusted)}, so that a file cannot make it import and run code; if you trust the "
                f"checkpoint, name that class in your config or pass --trusted_packages '[{package}]'"
            )
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        else:  # saved outside the CLI: settings of the configured model class
            hparams = {"class_path": self.config[subcommand].model.class_path, "init_args": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except ConfigurationError as error:
            raise CheckpointError(
                f"the model settings stored in checkpoint {ckpt_path} do not parse ({error}); it was written by "
                f"another version or class; pass the model settings in the config and a checkpoint of that model"
            ) from error

    def _take_trained_binning(self, config: Any, checkpoint: dict[str, Any]) -> None:
        """Set ``data.binning_steps`` to the binning the checkpoint's data module stored, unless given, so evaluation caches only those frames."""
        data = config.get("data")
        state = checkpoint.get(str(data.get("class_path")).rpartition(".")[2]) if data else None
        if isinstance(state, dict) and "binning_steps" in state and "data.binning_steps" not in self.explicit:
            data.init_args.binning_steps = state["binning_steps"]

    @staticmethod
    def _root(config: Any) -> Path:
        """Return the folder holding the run folders: ``trainer.default_root_dir`` (the working folder if unset)."""
        return Path(config.trainer.get("default_root_dir") or ".").expanduser()

    def _training_folder(self, config: Any, create: bool) -> tuple[Path, bool]:
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
            return (claim_version if create else next_version)(self._root(config)), False
        folder = self._root(config) / check_run_name(name)
        saved = sorted(folder.glob("checkpoints/*.ckpt")) + sorted(folder.glob("hpc_ckpt_*.ckpt"))
        if not saved:
            return folder, folder.is_dir()
        if os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
            raise ConfigurationError(
                f"run folder {folder} holds checkpoints of an earlier run; continue it with --ckpt_path "
                f"{folder / 'checkpoints' / 'last.ckpt'} or give this run another --run_name"
            )
        last = folder / "checkpoints" / "last.ckpt"
        if ckpt_path is None and not any(folder.glob("hpc_ckpt_*.ckpt")) and last.is_file():
            config.ckpt_path = str(last)  # requeued after a hard kill: no SIGUSR1 checkpoint, so the latest epoch
        return folder, True

    def _choose_run_folder(self, subcommand: str | None, config: Any) -> None:
        """Point every output of the command into its run folder and tag its wandb run (see :mod:`snn_lightning.runs`)."""
        create = subcommand is not None and launch_rank() == 0
        # The folder is new or this run's own (resumed, requeued). The same on every rank: Lightning's
        # config saving broadcasts only when it checks for an existing file, and ranks that disagree hang.
        self.save_config_kwargs["overwrite"] = True
        if subcommand in (None, "fit") and config.trainer.get("fast_dev_run"):
            # A smoke test: Lightning's ModelCheckpoint still writes last.ckpt at its end, so it gets a
            # folder of its own, and neither a run's checkpoints nor `latest` see its one-step model.
            folder = os.environ.get(RUN_DIR_VARIABLE)
            if folder is None:
                folder = self._throwaway = Path(tempfile.mkdtemp(prefix="snn-lightning-fast_dev_run-"))
            place_outputs(config, Path(folder), self.explicit, self._given_roots())
            self._run_dir = Path(folder)
            return
        if subcommand in (None, "fit"):
            folder, continued = self._training_folder(config, create)
            run = RunFolder.read(folder)
            if create and not os.environ.get(RUN_DIR_VARIABLE):
                run.write()
                if not continued:
                    previous = newest_run(self._root(config))
                    self._created_run = (folder, previous)
                    point_latest(self._root(config), folder)
            place_outputs(config, folder, self.explicit, self._given_roots())
            tag_wandb_runs(config, run, "fit", run.name, resumable=True, explicit=self.explicit)
            self._run_dir = folder
            return
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path:
            raise ConfigurationError(
                f"{subcommand} evaluates a trained model, and no --ckpt_path was given; pass --ckpt_path best or last "
                f"(the newest run under {self._root(config)}) or the path of a .ckpt file"
            )
        training = run_folder_of(Path(ckpt_path)) if "://" not in str(ckpt_path) else None
        parent = training or self._root(config)
        job = job_run_name()
        if os.environ.get(RUN_DIR_VARIABLE):
            folder = Path(os.environ[RUN_DIR_VARIABLE])
        elif job:
            folder = parent / f"{subcommand}_{job}"
        else:
            folder = evaluation_folder(parent, subcommand) if create else parent / f"{subcommand}_0"
        run = RunFolder.read(training) if training else None
        place_outputs(config, folder, self.explicit, self._given_roots())
        name = f"{run.name}/{folder.name}" if run else f"{parent.name}/{folder.name}"
        tag_wandb_runs(config, run, subcommand, name, resumable=False, explicit=self.explicit)
        self._run_dir = folder

    def _given_roots(self) -> set[Path]:
        """Return the values given to ``trainer.default_root_dir`` as absolute paths."""
        return {Path(str(root)).expanduser().absolute() for root in self._roots if root}

    def _forget_failed_start(self, error: BaseException) -> None:
        """Remove the run folder this command created when it stopped before writing a checkpoint (a NaN loss keeps its logs)."""
        if self._throwaway is not None:
            shutil.rmtree(self._throwaway, ignore_errors=True)
        if self._created_run is None or isinstance(_user_error(error), NonFiniteLossError):
            return
        folder, previous = self._created_run
        if folder.is_dir() and not any(folder.rglob("*.ckpt")):
            shutil.rmtree(folder, ignore_errors=True)
            point_latest(folder.parent, previous)
            for parent in folder.absolute().parents:  # the folders this run created above it, if now empty
                if parent == Path.cwd() or any(parent.iterdir()):
                    break
                parent.rmdir()

    def before_instantiate_classes(self) -> None:
        """Choose the run folder; refuse ``data.time_steps`` given with a value other than ``model.time_steps``."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        self._choose_run_folder(self.subcommand, config)
        model_steps = config.get("model.init_args.time_steps")
        data_steps = self.explicit.get("data.time_steps")
        if data_steps is not None and model_steps is not None and str(data_steps) != str(model_steps):
            raise ConfigurationError(
                f"data.time_steps is {data_steps} but model.time_steps is {model_steps}; the CLI copies the model's "
                f"time steps into the data, so give them once: --model.time_steps {data_steps} "
                f"(model.init_args.time_steps in YAML) and drop data.time_steps"
            )

    def after_instantiate_classes(self) -> None:
        """Refuse ``model.num_classes`` / ``model.in_channels`` given with values other than the data module's."""
        for name in _LINKED_FROM_DATA:
            value = self.explicit.get(f"model.{name}")
            actual = getattr(self.datamodule, name, None)
            if value is not None and actual is not None and str(value) != str(actual):
                raise ConfigurationError(
                    f"model.{name} is {value} but the data module ({type(self.datamodule).__name__}) has {name} = "
                    f"{actual}; the CLI sets the model's {name} from the data, so drop model.{name} "
                    f"(or choose data that has {value})"
                )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[L.Callback]) -> L.Trainer:
        """Instantiate the trainer with a Rich progress bar (main metrics beside it) unless the config chose a bar or none."""
        configured = (config.get("callbacks") or []) + callbacks
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in configured):
            callbacks = [*callbacks, RichProgressBar()]
        try:
            return super()._instantiate_trainer(config, callbacks)
        except MisconfigurationException as error:
            raise _trainer_error(error, config) from error

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Return the trainer with atomic checkpoint writes and, unless configured, ``NaNGuard``, ``EpochSeed``,
        ``SynchronizedSigterm``, ``BestMetricSummary`` (with wandb) and ``PredictionWriter`` (for predict)."""
        trainer = super().instantiate_trainer(**kwargs)
        defaults = [NaNGuard, EpochSeed, SynchronizedSigterm]
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

    def _check_run(self, module: L.LightningModule | None) -> None:
        """Check the output folders (room for checkpoints of ``module`` when given), the frame-cache folder and the sync-BN setting."""
        check_output_dirs(self.trainer, module)
        _check_cache_dir(self.datamodule)
        trainer_config = self.config_init[self.subcommand].get("trainer", {})
        if (
            trainer_config.get("sync_batchnorm")
            and self.trainer.world_size > 1
            and isinstance(self.trainer.accelerator, CPUAccelerator)
        ):
            raise ConfigurationError(
                "trainer.sync_batchnorm is true but the processes run on CPUs, and torch's SyncBatchNorm runs on "
                "GPUs only; set trainer.sync_batchnorm: false on CPUs (each process then normalises its own batch)"
            )

    def before_fit(self) -> None:
        self._check_run(self.model)

    def before_validate(self) -> None:
        self._check_run(None)

    def before_test(self) -> None:
        self._check_run(None)

    def before_predict(self) -> None:
        self._check_run(None)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the subcommand; a checkpoint of another model, a config.yaml in the way and a SIGTERM get one clear message."""
        os.environ[RUN_DIR_VARIABLE] = str(self._run_dir.absolute())  # for the workers a DDP launch starts
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            self._report_sigterm()
            raise SystemExit(128 + signal.SIGTERM) from None
        except Exception as error:
            if not isinstance(error, SNNLightningError) and _is_wandb_error(error):
                raise ConfigurationError(
                    f"wandb could not start its run ({_first_line(error)}); without network run it offline with "
                    f"WANDB_MODE=offline (upload later with `wandb sync`), or log to CSV instead with "
                    f"--trainer.logger lightning.pytorch.loggers.CSVLogger"
                ) from error
            if not isinstance(error, RuntimeError):
                raise
            existing = re.search(r"SaveConfigCallback expected (.*) to NOT exist", str(error))
            if existing:
                raise ConfigurationError(
                    f"{existing[1]} exists from an earlier run in the same folder; give this run its own folder "
                    f"(trainer.default_root_dir, or a logger that numbers its versions) or delete that file"
                ) from error
            if "Error(s) in loading state_dict" not in str(error):
                raise
            ckpt_path = self.config_init[subcommand].get("ckpt_path")
            raise CheckpointError(
                f"checkpoint {ckpt_path} does not fit the configured model: {_state_dict_mismatch(str(error))}; it was "
                f"saved from another model: pass the config it was trained with (config.yaml in its run folder), "
                f"or leave out --ckpt_path to start afresh"
            ) from error
        finally:
            os.environ.pop(RUN_DIR_VARIABLE, None)
            if self._throwaway is not None:
                shutil.rmtree(self._throwaway, ignore_errors=True)

    def _report_sigterm(self) -> None:
        """Print where a run stopped by SIGTERM can resume from (on rank 0)."""
        if not self.trainer.is_global_zero:
            return
        saved = latest_checkpoint(self.trainer)
        resume = f"resume with --ckpt_path {saved}" if saved else "no checkpoint was written yet"
        print(
            f"stopped by SIGTERM in epoch {self.trainer.current_epoch} (global step {self.trainer.global_step}); {resume}",
            file=sys.stderr,
        )


def main(args: list[str] | None = None) -> None:
    """Run the CLI; a user-fixable error prints its message and exits with status 2, a SIGTERM exits with 143."""
    argv = sys.argv[1:] if args is None else args
    try:
        if argv[:1] == ["export"]:
            from snn_lightning.export.command import export  # nir and h5py are loaded for export only

            export(argv[1:])
        else:
            SNNLightningCLI(args=args)
    except Exception as error:
        user_error = _user_error(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


def _check_cache_dir(datamodule: L.LightningDataModule | None) -> None:
    """Refuse a ``cache_dir`` of the data module that is, or lies inside, a file (the frames are cached in its setup)."""
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


def _first_line(error: BaseException) -> str:
    """Return the first line of ``error``'s message, or its class name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_wandb_error(error: BaseException | None) -> bool:
    """Return whether ``error`` or an error behind it was raised by wandb (no API key, no network, a refused login)."""
    while error is not None:
        if type(error).__module__.split(".")[0] == "wandb":
            return True
        error = error.__cause__ or error.__context__
    return False


def _trainer_error(error: MisconfigurationException, config: dict[str, Any]) -> ConfigurationError:
    """Return Lightning's refusal of a trainer setting as one line naming the setting and the fix."""
    message = _first_line(error)
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


def _user_error(error: BaseException | None) -> SNNLightningError | None:
    """Return the user-fixable error behind ``error``: jsonargparse wraps errors raised while instantiating."""
    while error is not None:
        if isinstance(error, SNNLightningError):
            return error
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    main()
