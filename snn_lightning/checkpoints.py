"""Reading Lightning checkpoints safely: tensors only by default, and only classes of trusted packages.

A checkpoint's stored settings name classes by ``class_path``; jsonargparse would import any of
them, running its module, so :func:`untrusted_classes` lists the ones outside the trusted packages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from snn_lightning.errors import CheckpointError

__all__ = [
    "TRUSTED_PACKAGES",
    "load_file",
    "named_classes",
    "read_checkpoint",
    "state_dict_mismatch",
    "untrusted_classes",
]

# Packages whose classes a checkpoint's stored settings may name without the user's say-so.
TRUSTED_PACKAGES = ("snn_lightning", "torch", "lightning")


def load_file(path: str | Path, weights_only: bool = True) -> tuple[Path, Any]:
    """Return the absolute path and the object ``torch.load`` reads from ``path`` (on the CPU).

    Args:
        path: the ``.ckpt`` (or ``torch.save``) file.
        weights_only: refuse pickled Python objects (``torch.load(weights_only=True)``); turn off only for files you trust.

    Raises :class:`CheckpointError` naming the fix when the file is missing, refused or unreadable.
    """
    file = Path(path).expanduser().absolute()
    if not file.is_file():
        raise CheckpointError(
            f"checkpoint {file} does not exist; give the path of a .ckpt file (e.g. "
            f"logs/quickstart/latest/checkpoints/last.ckpt) or `last` / `best` for the newest run's checkpoint"
        )
    try:
        return file, torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # unpickling arbitrary bytes can raise almost any exception type
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


def read_checkpoint(path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """Return the Lightning checkpoint at ``path`` (on the CPU), raising :class:`CheckpointError` with the fix when it cannot be used.

    Args:
        path: the ``.ckpt`` file.
        weights_only: refuse pickled Python objects (``torch.load(weights_only=True)``); turn off only for files you trust.
    """
    file, checkpoint = load_file(path, weights_only)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"checkpoint {file} is not a Lightning checkpoint (no state_dict); give a .ckpt written by snn-lightning"
        )
    return checkpoint


def named_classes(settings: Any, where: str = "model") -> list[tuple[str, str]]:
    """Return ``(class path, setting)`` for every ``class_path`` named in ``settings`` (nested dicts and lists).

    Args:
        settings: stored or parsed settings (dicts, lists and plain values).
        where: the setting ``settings`` belongs to, for the names returned.
    """
    found = []
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key in ("class_path", "_class_path"):
                found.append((str(value), where))
            found += named_classes(value, where if key in ("init_args", "dict_kwargs") else f"{where}.{key}")
    elif isinstance(settings, list):
        for index, value in enumerate(settings):
            found += named_classes(value, f"{where}[{index}]")
    return found


def untrusted_classes(settings: Any, trusted: Iterable[str]) -> list[str]:
    """Return ``"<class path> (at <setting>)"`` for every class named in ``settings`` outside the ``trusted`` packages.

    Args:
        settings: a checkpoint's stored model settings.
        trusted: top-level package names whose classes may be imported.
    """
    trusted = tuple(trusted)
    return [f"{path} (at {where})" for path, where in named_classes(settings) if path.split(".")[0] not in trusted]


def state_dict_mismatch(message: str) -> str:
    """Return a short summary of torch's ``Error(s) in loading state_dict`` message: shapes, missing and unexpected keys.

    Args:
        message: the text of the ``RuntimeError`` that ``load_state_dict`` raised.
    """
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
