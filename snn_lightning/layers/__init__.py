"""Layers for time-major spiking networks: time folding, BN over time, input encoding, spike-driven convolution."""

from snn_lightning.layers.batchnorm import TemporalBatchNorm1d, TemporalBatchNorm2d
from snn_lightning.layers.encoding import DirectEncoder
from snn_lightning.layers.spike_conv import SpikeConv2d, spike_conv2d
from snn_lightning.layers.time_distributed import TimeDistributed, fold_time, unfold_time

__all__ = [
    "TimeDistributed",
    "fold_time",
    "unfold_time",
    "TemporalBatchNorm1d",
    "TemporalBatchNorm2d",
    "DirectEncoder",
    "SpikeConv2d",
    "spike_conv2d",
]
