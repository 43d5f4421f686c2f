"""The model settings a command takes from its ``--ckpt_path``, checked against what the command line gives."""

from __future__ import annotations

from typing import Any

from snn_lightning.checkpoints import TRUSTED_PACKAGES, import_paths, untrusted_imports
from snn_lightning.errors import CheckpointError, ConfigurationError

__all__ = ["NEWEST_CKPT_PATHS", "SPECIAL_CKPT_PATHS", "stored_model_settings"]

# ckpt_path values that name the newest run's checkpoint under trainer.default_root_dir.
NEWEST_CKPT_PATHS = ("best", "last")
# ckpt_path values Lightning resolves itself rather than reading a file.
SPECIAL_CKPT_PATHS = ("best", "last", "hpc")


def stored_model_settings(
    checkpoint: dict[str, Any], config: Any, command_line: dict[str, str], ckpt_path: str
) -> dict[str, Any] | None:
    """Return the checkpoint's model settings as a ``class_path`` entry to parse, or None when it stored none.

    Settings given on the command line win and are left out (e.g. ``--model.spike_conv_max_density 0``
    to evaluate without the sparse convolution), except ``time_steps``, which the network's weights
    are built for: a different one is refused, pointing to ``eval_time_steps``. A checkpoint naming
    a class or function outside the trusted packages (ours, torch, lightning, the packages the
    config names and ``trusted_packages``), as a ``class_path`` or any other dotted name that
    jsonargparse would import, is refused before anything it names is imported.

    Args:
        checkpoint: the loaded Lightning checkpoint.
        config: the subcommand's parsed config.
        command_line: the dotted settings given on the command line.
        ckpt_path: the checkpoint's path, for error messages.
    """
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    given_steps, trained_steps = command_line.get("model.time_steps"), hparams.get("time_steps")
    if given_steps is not None and trained_steps is not None and str(given_steps) != str(trained_steps):
        raise ConfigurationError(
            f"--model.time_steps is {given_steps} but checkpoint {ckpt_path} was trained with time_steps="
            f"{trained_steps}, which its weights are built for; to evaluate on the first steps only use "
            f"--model.eval_time_steps {given_steps} and drop --model.time_steps"
        )
    for key in command_line:
        if key.startswith("model."):
            hparams.pop(key.removeprefix("model."), None)
    if not hparams:
        return None
    chosen = {path.split(".")[0] for path, _, _ in import_paths(config.clone().as_dict())}
    trusted = tuple(dict.fromkeys((*TRUSTED_PACKAGES, *sorted(chosen), *config.get("trusted_packages", []))))
    untrusted = untrusted_imports(hparams, trusted)
    if untrusted:
        named, package = untrusted[0]
        raise CheckpointError(
            f"checkpoint {ckpt_path} names {named}; the CLI takes classes and functions named by a checkpoint only "
            f"from {', '.join(trusted)}, so that a file cannot make it import and run code; if you trust the "
            f"checkpoint, name {'that class' if named.startswith('the class ') else 'it'} in your config or pass "
            f"--trusted_packages '[{package}]'"
        )
    if "_class_path" in hparams:
        return {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    return {"class_path": config.model.class_path, "init_args": hparams}  # saved outside the CLI
