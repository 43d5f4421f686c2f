"""Layers for time-major spiking networks: batch layouts, time folding, BN over time, encoding, spike-driven convolution."""

from snn_lightning.layers.batch_layout import first_samples, is_time_major
from snn_lightning.layers.batchnorm import TemporalBatchNorm1d, TemporalBatchNorm2d
from snn_lightning.layers.encoding import DirectEncoder
from snn_lightning.layers.spike_conv import DEFAULT_MAX_DENSITY, SpikeConv2d, spike_conv2d
from snn_lightning.layers.time_distributed import TimeDistributed, fold_time, unfold_time

__all__ = [
    "is_time_major",
    "first_samples",
    "TimeDistributed",
    "fold_time",
    "unfold_time",
    "TemporalBatchNorm1d",
    "TemporalBatchNorm2d",
    "DirectEncoder",
    "DEFAULT_MAX_DENSITY",
    "SpikeConv2d",
    "spike_conv2d",
]
