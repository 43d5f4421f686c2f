"""Reading Lightning checkpoints safely: tensors only by default, and only classes and functions of trusted packages.

A checkpoint's stored settings name classes by ``class_path`` and may hold any other dotted name
(``lr_lambda: os._exit``); jsonargparse would import each of them, running its module, and call
it, so :func:`untrusted_imports` lists the ones that lead outside the trusted packages.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from snn_lightning.errors import CheckpointError, missing_file_reason

__all__ = [
    "CHECKPOINT_FILES",
    "TRUSTED_PACKAGES",
    "import_paths",
    "load_file",
    "read_checkpoint",
    "state_dict_mismatch",
    "untrusted_imports",
]

# Packages whose classes and functions a checkpoint's stored settings may name without the user's say-so.
TRUSTED_PACKAGES = ("snn_lightning", "torch", "lightning")
# Where a folder given for a checkpoint file holds the ones probably meant (a run folder's are in checkpoints/).
CHECKPOINT_FILES = ("*.ckpt", "checkpoints/*.ckpt")


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
            f"checkpoint {file} {missing_file_reason(file, CHECKPOINT_FILES)}; give the path of a .ckpt file (e.g. "
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


def import_paths(settings: Any, where: str = "model") -> list[tuple[str, str, bool]]:
    """Return ``(import path, setting, is a class_path)`` for every value of ``settings`` that jsonargparse could import.

    That is every ``class_path`` and every other string that is a dotted name (``os._exit``,
    ``mylab.warmup``) whose first part names a module Python can find, at any depth of nested
    dicts (``init_args``, ``dict_kwargs``) and lists. A dotted name of no module
    (``teacher.ckpt``) cannot be imported and is left out.

    Args:
        settings: stored or parsed settings (dicts, lists and plain values).
        where: the setting ``settings`` belongs to, for the names returned.
    """
    found = []
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key in ("class_path", "_class_path"):
                found.append((str(value), where, True))
            else:
                found += import_paths(value, where if key in ("init_args", "dict_kwargs") else f"{where}.{key}")
    elif isinstance(settings, (list, tuple)):
        for index, value in enumerate(settings):
            found += import_paths(value, f"{where}[{index}]")
    elif isinstance(settings, str) and _is_dotted_name(settings) and _module_exists(settings.split(".")[0]):
        found.append((settings, where, False))
    return found


def _is_dotted_name(value: str) -> bool:
    """Return whether ``value`` has the form jsonargparse imports: identifiers joined by dots, at least two."""
    parts = value.split(".")
    return len(parts) > 1 and all(part.isidentifier() for part in parts)


def _module_exists(name: str) -> bool:
    """Return whether the top-level module ``name`` is imported or importable (found without running it)."""
    try:
        return name in sys.modules or importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def untrusted_imports(settings: Any, trusted: Iterable[str]) -> list[tuple[str, str]]:
    """Return ``(description, package)`` for every import path in ``settings`` that leads outside the ``trusted`` packages.

    A path leads outside when its first part is not trusted, or when it reaches an object defined
    elsewhere through a trusted module (``torch.os._exit`` is ``os._exit``): for a path under a
    trusted package the objects are looked up (importing that package's modules only) and each
    one's defining module is checked, stopping at the first outside one.
    The description reads ``"the class mylab.Neuron (at model.neuron)"`` or
    ``"torch.os._exit (at model.lr_scheduler.lr_lambda), which reaches os"``; the package is the
    one to trust to allow it.

    Args:
        settings: a checkpoint's stored model settings.
        trusted: top-level package names whose classes and functions may be imported.
    """
    trusted = tuple(trusted)
    found = []
    for path, where, is_class in import_paths(settings):
        outside = _outside_origin(path, trusted)
        if outside is not None:
            reaches = f", which reaches {outside}" if outside != path else ""
            found.append((f"{'the class ' if is_class else ''}{path} (at {where}){reaches}", outside.split(".")[0]))
    return found


def _outside_origin(path: str, trusted: tuple[str, ...]) -> str | None:
    """Return the first module outside ``trusted`` that ``path`` names or reaches (``path`` itself when its package is not trusted), else None.

    None too when the path does not resolve: jsonargparse cannot import it either.
    """
    parts = path.split(".")
    if parts[0] not in trusted:
        return path
    for index in range(len(parts), 0, -1):  # the longest prefix that is a module
        try:
            target: Any = importlib.import_module(".".join(parts[:index]))
            break
        except ImportError:
            continue
        except Exception:  # a trusted module failing to import: nothing resolves
            return None
    else:
        return None
    for name in parts[index:]:
        if _defined_in(target).split(".")[0] not in trusted:
            return _defined_in(target)
        try:
            target = getattr(target, name)
        except Exception:
            return None
    origin = _defined_in(target)
    return None if origin.split(".")[0] in trusted else origin


def _defined_in(target: Any) -> str:
    """Return the module that defines ``target`` ("" when it cannot tell): a module's name, a class's or function's module, a partial's function's, an instance's class's."""
    if inspect.ismodule(target):
        return target.__name__
    if isinstance(target, functools.partial):
        return _defined_in(target.func)
    if inspect.isclass(target) or inspect.isroutine(target):
        module = getattr(target, "__module__", None)
        if module is None:  # a C method: its class (or object) tells
            owner = getattr(target, "__objclass__", None) or getattr(target, "__self__", None)
            return "" if owner is None else _defined_in(owner)
        return module
    return _defined_in(type(target))


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
