"""The settings a command takes from its ``--ckpt_path``: the model's stored settings and the trained binning."""

from __future__ import annotations

from typing import Any

from snn_lightning.checkpoints import TRUSTED_PACKAGES, named_classes, untrusted_classes
from snn_lightning.errors import CheckpointError

__all__ = ["NEWEST_CKPT_PATHS", "SPECIAL_CKPT_PATHS", "stored_model_settings", "take_trained_binning"]

# ckpt_path values that name the newest run's checkpoint under trainer.default_root_dir.
NEWEST_CKPT_PATHS = ("best", "last")
# ckpt_path values Lightning resolves itself rather than reading a file.
SPECIAL_CKPT_PATHS = ("best", "last", "hpc")


def stored_model_settings(
    checkpoint: dict[str, Any], config: Any, command_line: dict[str, str], ckpt_path: str
) -> dict[str, Any] | None:
    """Return the checkpoint's model settings as a ``class_path`` entry to parse, or None when it stored none.

    Settings given on the command line win and are left out. A checkpoint naming a class outside
    the trusted packages (ours, torch, lightning, the config's and ``trusted_packages``) is refused.

    Args:
        checkpoint: the loaded Lightning checkpoint.
        config: the subcommand's parsed config.
        command_line: the dotted settings given on the command line.
        ckpt_path: the checkpoint's path, for error messages.
    """
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    for key in command_line:
        if key.startswith("model."):
            hparams.pop(key.removeprefix("model."), None)
    if not hparams:
        return None
    chosen = {path.split(".")[0] for path, _ in named_classes(config.clone().as_dict())}
    trusted = (*TRUSTED_PACKAGES, *sorted(chosen), *config.get("trusted_packages", []))
    untrusted = untrusted_classes(hparams, trusted)
    if untrusted:
        package = untrusted[0].split(".")[0]
        raise CheckpointError(
            f"checkpoint {ckpt_path} names the class {untrusted[0]}; the CLI takes classes named by a checkpoint only "
            f"from {', '.join(trusted)}, so that a file cannot make it import and run code; if you trust the "
            f"checkpoint, name that class in your config or pass --trusted_packages '[{package}]'"
        )
    if "_class_path" in hparams:
        return {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    return {"class_path": config.model.class_path, "init_args": hparams}  # saved outside the CLI


def take_trained_binning(config: Any, checkpoint: dict[str, Any], explicit: dict[str, Any]) -> None:
    """Set ``data.binning_steps`` to the binning the checkpoint's data module stored, unless given, so evaluation caches only those frames.

    Args:
        config: the subcommand's parsed config (changed in place).
        checkpoint: the loaded Lightning checkpoint.
        explicit: the dotted settings the user gave.
    """
    data = config.get("data")
    state = checkpoint.get(str(data.get("class_path")).rpartition(".")[2]) if data else None
    if isinstance(state, dict) and "binning_steps" in state and "data.binning_steps" not in explicit:
        data.init_args.binning_steps = state["binning_steps"]
