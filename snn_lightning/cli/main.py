"""The ``snn-lightning`` command: fit / validate / test / predict (LightningCLI) and export.

    snn-lightning fit --config configs/quickstart.yaml      (or --config quickstart: the copy shipped in the package)
    snn-lightning test --config configs/quickstart.yaml --ckpt_path last --model.eval_time_steps 2
    snn-lightning export --config configs/quickstart.yaml --ckpt_path logs/quickstart/latest/checkpoints/best.ckpt --format nir

A mistake the user can fix (a config file that is missing, empty, not YAML or sets a key twice, an unknown or
mistyped setting or class, a trainer setting Lightning refuses, a GPU accelerator without a GPU, an empty or missing
``--ckpt_path``, a checkpoint that does not fit the model, an unwritable log folder, a frame-cache
folder that is a file, wandb without network, a loss that turns NaN, memory run out at a large T) prints one
``error: …`` line naming the setting and the fix, and exits with status 2. Without a wandb API key, wandb logs offline.
"""

from __future__ import annotations

import os
import sys

from snn_lightning.cli.lightning_cli import SNNLightningCLI
from snn_lightning.cli.quiet import finish_wandb_runs, quiet_library_output
from snn_lightning.cli.shipped_configs import configs_command, with_shipped_configs
from snn_lightning.errors import user_error

__all__ = ["main"]


def main(args: list[str] | None = None) -> None:
    """Run the CLI; a user-fixable error prints its message and exits with status 2, a SIGTERM exits with 143.

    Library messages with nothing to act on are hidden (:mod:`~snn_lightning.cli.quiet`), and the wandb runs
    are finished before exit.

    Args:
        args: the command-line arguments; None reads ``sys.argv``.
    """
    argv = with_shipped_configs(sys.argv[1:] if args is None else args)
    _import_from_working_folder()
    quiet_library_output()
    try:
        if argv[:1] == ["export"]:
            from snn_lightning.cli.export import export  # nir and h5py are loaded for export only

            export(argv[1:])
        elif argv[:1] == ["configs"]:
            configs_command(argv[1:])
        else:
            finish_wandb_runs(SNNLightningCLI(args=argv).trainer)
    except Exception as error:
        found = user_error(error)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        sys.exit(2)


def _import_from_working_folder() -> None:
    """Let a config name classes of modules in the working folder (``examples.custom_model.MyNet``), as ``python -m`` does.

    The folder goes last on the import path, so an installed package wins over a folder of the same name.
    """
    folder = os.getcwd()
    if folder not in sys.path:
        sys.path.append(folder)
