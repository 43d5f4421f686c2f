"""Classes named by import path (``package.module.Class``), as configs and checkpoints name them."""

from __future__ import annotations

import inspect
import pkgutil

__all__ = ["class_at"]


def class_at(class_path: str) -> type | None:
    """Return the class ``class_path`` names, or None when it does not import or names no class.

    >>> class_at("torch.nn.Linear").__name__, class_at("torch.nn.NoSuchLayer"), class_at("torch.nn.functional.relu")
    ('Linear', None, None)
    """
    try:
        found = pkgutil.resolve_name(class_path)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if inspect.isclass(found) else None
