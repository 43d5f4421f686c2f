"""The ``snn-lightning`` command: LightningCLI with fit / validate / test / predict.

    snn-lightning fit --config configs/quickstart.yaml
    snn-lightning test --config configs/quickstart.yaml --ckpt_path last --model.time_steps 2

Model and data are chosen by ``class_path`` in YAML (subclass mode). The data module's number of
classes and input channels are linked into the model, and the model's time steps into the data,
so none of them is typed twice.
"""

from __future__ import annotations

import sys

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from snn_lightning.errors import SNNLightningError

__all__ = ["SNNLightningCLI", "main"]


class SNNLightningCLI(LightningCLI):
    """LightningCLI that links data and model settings shared by both."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")
        # Model -> data, so `--model.time_steps 2` at evaluation also changes the event frames.
        parser.link_arguments("model.init_args.time_steps", "data.init_args.time_steps", apply_on="parse")


def main(args: list[str] | None = None) -> None:
    """Run the CLI; a user-fixable error prints its message and exits with status 2."""
    try:
        SNNLightningCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
        )
    except Exception as error:
        user_error = _user_error(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)


def _user_error(error: BaseException | None) -> SNNLightningError | None:
    """Return the user-fixable error behind ``error``: jsonargparse wraps errors raised while instantiating."""
    while error is not None:
        if isinstance(error, SNNLightningError):
            return error
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    main()
