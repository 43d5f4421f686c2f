"""The configs shipped inside the package: ``--config quickstart`` by name, and ``snn-lightning configs list|copy``.

Why: a pip install has no repository ``configs/`` folder; the package carries the same files
(the repository's ``configs`` links to them), so every documented command works from any folder.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from snn_lightning.errors import ConfigurationError

__all__ = ["SHIPPED_CONFIGS", "shipped_config_names", "with_shipped_configs", "configs_command"]

SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"

USAGE = """usage: snn-lightning configs list          the shipped configs, by the name --config takes
       snn-lightning configs copy DIR      copy them into DIR (created), to edit and run from there"""


def shipped_config_names() -> list[str]:
    """Return the names of the shipped experiment configs (``quickstart``, ``staa_cifar100``, ...), sorted."""
    return sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml"))


def _shipped_path(value: str) -> Path | None:
    """Return the shipped file ``value`` names (``quickstart``, ``quickstart.yaml``, ``configs/quickstart.yaml``), if any."""
    name = value.removeprefix("configs/")
    for candidate in (name, f"{name}.yaml"):
        path = SHIPPED_CONFIGS / candidate
        if path.is_file() and path.resolve().is_relative_to(SHIPPED_CONFIGS):
            return path
    return None


def with_shipped_configs(argv: list[str]) -> list[str]:
    """Return ``argv`` with every ``--config``/``-c`` value that is no file here but names a shipped config replaced by its path.

    A file in the working folder always wins, so ``--config configs/quickstart.yaml`` in a copy of
    the configs (``snn-lightning configs copy configs``) runs the copy.

    Args:
        argv: the command-line arguments (subcommand included).
    """
    resolved = list(argv)
    for index, token in enumerate(resolved):
        option, equals, value = token.partition("=")
        if option not in ("--config", "-c"):
            continue
        position = index if equals else index + 1
        if not equals:
            if position >= len(resolved):
                continue
            value = resolved[position]
        if Path(value).exists() or (shipped := _shipped_path(value)) is None:
            continue
        resolved[position] = f"{option}={shipped}" if equals else str(shipped)
    return resolved


def configs_command(args: list[str]) -> None:
    """Run ``snn-lightning configs list`` or ``snn-lightning configs copy DIR``.

    Args:
        args: the arguments after ``configs``.
    """
    if args == ["list"]:
        print("\n".join(shipped_config_names()))
        print(f"(in {SHIPPED_CONFIGS}; run one with: snn-lightning fit --config quickstart)", file=sys.stderr)
        return
    if len(args) == 2 and args[0] == "copy":
        target = Path(args[1])
        if target.is_file() or (target.is_dir() and any(target.iterdir())):
            raise ConfigurationError(
                f"configs copy: {target} exists and is not an empty folder; name a new or empty folder"
            )
        shutil.copytree(SHIPPED_CONFIGS, target, dirs_exist_ok=True)
        print(f"copied {len(shipped_config_names())} configs (and base/, slurm/) to {target}", file=sys.stderr)
        return
    raise ConfigurationError(f"configs takes `list` or `copy DIR`, got {' '.join(args) or 'nothing'}\n{USAGE}")
