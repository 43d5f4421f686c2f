"""snn-lightning: train spiking neural networks with PyTorch Lightning."""

import os

# OpenMP threads that spin while waiting take the cores from dataloader workers and other DDP
# processes on the same CPU: on 2 cores a training step with one data worker ran 30x slower.
# Passive waiting costs little when the cores are free. Read when torch loads its OpenMP runtime,
# so this takes effect where snn_lightning is imported before torch (the `snn-lightning` command,
# the tests); an OMP_WAIT_POLICY set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
