"""Runnable examples of bringing your own model, data module and neuron to ``snn-lightning`` (see README.md)."""
