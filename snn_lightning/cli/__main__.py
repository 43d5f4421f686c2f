"""``python -m snn_lightning.cli``: the ``snn-lightning`` command, as DDP and SLURM launch it."""

from snn_lightning.cli.main import main

main()
