"""snn-lightning: train spiking neural networks with PyTorch Lightning."""

__version__ = "0.1.0"
