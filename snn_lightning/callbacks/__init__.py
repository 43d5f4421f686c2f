"""Callbacks that show inside a spiking network (firing rates, energy, per-step accuracy, plots) and record runs (config, checkpoints, predictions)."""

from snn_lightning.callbacks.checkpoint import ModelCheckpoint
from snn_lightning.callbacks.energy import (
    COST_PRESETS,
    EnergyCosts,
    EnergyEstimate,
    EnergyReport,
    LayerActivity,
    LayerEnergy,
    estimate_energy,
)
from snn_lightning.callbacks.per_step_accuracy import PerStepAccuracy, running_mean_logits
from snn_lightning.callbacks.plotting import PlotCallback, record_layer
from snn_lightning.callbacks.predictions import PredictionWriter
from snn_lightning.callbacks.progress import EpochLines, RichProgress
from snn_lightning.callbacks.resumed_metrics import ResumedMetrics
from snn_lightning.callbacks.run_record import RunRecord
from snn_lightning.callbacks.run_summary import BestMetricSummary
from snn_lightning.callbacks.save_config import LoggerSaveConfigCallback
from snn_lightning.callbacks.sigterm import SynchronizedSigterm
from snn_lightning.callbacks.slurm_requeue import SlurmRequeue
from snn_lightning.callbacks.spike_stats import SpikeStats, firing_rates, spiking_layers, spiking_module_types

__all__ = [
    "BestMetricSummary",
    "COST_PRESETS",
    "EnergyCosts",
    "EnergyEstimate",
    "EnergyReport",
    "EpochLines",
    "LayerActivity",
    "LayerEnergy",
    "LoggerSaveConfigCallback",
    "ModelCheckpoint",
    "PerStepAccuracy",
    "PlotCallback",
    "PredictionWriter",
    "RichProgress",
    "ResumedMetrics",
    "RunRecord",
    "SlurmRequeue",
    "SpikeStats",
    "SynchronizedSigterm",
    "estimate_energy",
    "firing_rates",
    "record_layer",
    "running_mean_logits",
    "spiking_layers",
    "spiking_module_types",
]
