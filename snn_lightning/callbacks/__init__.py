"""Callbacks that show inside a spiking network: firing rates, energy, per-step accuracy, plots, config logging."""

from snn_lightning.callbacks.energy import COST_PRESETS, EnergyEstimate, EnergyReport, LayerActivity, estimate_energy
from snn_lightning.callbacks.per_step_accuracy import PerStepAccuracy, running_mean_logits
from snn_lightning.callbacks.plotting import PlotCallback, record_layer
from snn_lightning.callbacks.save_config import LoggerSaveConfigCallback
from snn_lightning.callbacks.spike_stats import SpikeStats, firing_rates, spiking_layers

__all__ = [
    "COST_PRESETS",
    "EnergyEstimate",
    "EnergyReport",
    "LayerActivity",
    "LoggerSaveConfigCallback",
    "PerStepAccuracy",
    "PlotCallback",
    "SpikeStats",
    "estimate_energy",
    "firing_rates",
    "record_layer",
    "running_mean_logits",
    "spiking_layers",
]
