"""The ``snn-lightning`` command (:func:`main`) and its LightningCLI (:class:`SNNLightningCLI`); nothing else in the package imports it."""

from snn_lightning.cli.lightning_cli import SNNLightningCLI
from snn_lightning.cli.main import main

__all__ = ["SNNLightningCLI", "main"]
