"""Layers for time-major spiking networks: time folding, BN over time, input encoding."""

from snn_lightning.layers.batchnorm import TemporalBatchNorm1d, TemporalBatchNorm2d
from snn_lightning.layers.encoding import DirectEncoder
from snn_lightning.layers.time_distributed import TimeDistributed, fold_time, unfold_time

__all__ = ["TimeDistributed", "fold_time", "unfold_time", "TemporalBatchNorm1d", "TemporalBatchNorm2d", "DirectEncoder"]
