"""Energy estimate of a spiking network on the test set, by the accounting SNN papers use.

Per conv/linear layer ``l``, with ``MACs_l`` its multiply-accumulates for one sample and one time
step (from the layer shapes) and ``fr_l`` the fraction of non-zero values in its input:

* a layer whose input is binary spikes (every value 0 or 1) only accumulates a weight per spike:
  ``SOPs_l = fr_l × T × MACs_l``, at ``E_AC`` each;
* any other layer (the first convolution sees the real-valued image) multiplies: ``MACs_l`` at
  ``E_MAC``, once if its input is the same at every step (direct encoding repeats the image, so
  its currents are computed once), else ``T`` times;
* the equivalent ANN runs every layer once: ``E_MAC × Σ MACs_l``.

BN (folded into the weights at inference), pooling, attention products and neuron updates are
not counted, as is usual in SNN papers (e.g. Spikformer, STAA-SNN).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from snn_lightning.callbacks.spike_stats import CountFn, LayerCounts, log_reduced
from snn_lightning.errors import ConfigurationError
from snn_lightning.models import measure_complexity

__all__ = ["COST_PRESETS", "CostPreset", "EnergyEstimate", "EnergyReport", "LayerActivity", "estimate_energy"]

CostPreset = Literal["45nm_fp32", "fp16", "int8"]
# (E_MAC, E_AC) in picojoules per operation (Horowitz 2014, 45 nm CMOS).
COST_PRESETS: dict[str, tuple[float, float]] = {"45nm_fp32": (4.6, 0.9), "fp16": (1.5, 0.4), "int8": (0.23, 0.03)}


@dataclass(frozen=True)
class LayerActivity:
    """What the energy of one conv/linear layer depends on, for one sample."""

    macs: float  # multiply-accumulates of one time step, from the layer shapes
    input_rate: float  # fraction of non-zero values in the layer's input
    spike_input: bool  # every input value was 0 or 1 (spikes), so the layer only accumulates
    repeated_input: bool  # the input was the same at every time step


@dataclass(frozen=True)
class EnergyReport:
    """Operations and energy of one sample (one inference over ``time_steps`` steps)."""

    time_steps: int
    macs: float  # multiply-accumulates the SNN performs (layers with real-valued input)
    sops: float  # synaptic operations (accumulates) of the spike-driven layers
    energy_pj: float  # E_MAC × macs + E_AC × sops
    ann_macs: float  # Σ MACs of one step: the equivalent ANN
    ann_energy_pj: float  # E_MAC × ann_macs


def estimate_energy(layers: Mapping[str, LayerActivity], time_steps: int, e_mac: float, e_ac: float) -> EnergyReport:
    """Return the SNN's and the equivalent ANN's operations and energy (pJ) for one sample from its layers' activity.

    Args:
        layers: every conv/linear layer's activity, by name.
        time_steps: number of steps T of one inference.
        e_mac: energy of one multiply-accumulate in pJ.
        e_ac: energy of one accumulate in pJ.
    """
    macs = sops = 0.0
    for layer in layers.values():
        if layer.spike_input:
            sops += layer.input_rate * time_steps * layer.macs
        else:
            macs += layer.macs * (1 if layer.repeated_input else time_steps)
    ann_macs = sum(layer.macs for layer in layers.values())
    return EnergyReport(time_steps, macs, sops, e_mac * macs + e_ac * sops, ann_macs, e_mac * ann_macs)


def _input_counts(time_steps: int) -> CountFn:
    """Return the pre-hook count ``[non-zeros, elements, non-binary calls, time-varying calls]`` for ``time_steps``."""

    def count(module: nn.Module, x: Tensor) -> Tensor:
        non_binary = ((x != 0) & (x != 1)).any()
        # Inputs are time-major ([T, B, ...] or folded [T*B, ...]), so step t is the t-th slice of T.
        if time_steps > 1 and x.numel() % time_steps == 0:
            steps = x.reshape(time_steps, -1)
            varying = (steps[1:] != steps[:1]).any()
        else:
            varying = torch.ones((), dtype=torch.bool, device=x.device)
        return torch.stack((x.count_nonzero(), x.new_full((), x.numel(), dtype=torch.int64), non_binary, varying))

    return count


def _time_steps_of(pl_module: L.LightningModule, images: Tensor) -> int:
    """Return the number of steps the model runs ``images`` for: frames ``[T, B, ...]`` bring their own T."""
    return images.shape[0] if images.ndim == 5 else pl_module.time_steps


def _first_sample(images: Tensor) -> Tensor:
    """Return one sample of a batch: ``[1, C, H, W]`` of images or ``[T, 1, C, H, W]`` of frames."""
    return images[:, :1] if images.ndim == 5 else images[:1]


class EnergyEstimate(L.Callback):
    """Estimate the energy of one test inference, and log the model's size when training starts.

    At test end it logs, per sample: ``test/energy_mj`` (SNN), ``test/sops`` (synaptic
    operations) and ``test/ann_energy_mj`` (the same network as an ANN), and prints the rule used
    once. Input firing rates come from forward pre-hooks on every conv/linear layer during the test
    epoch (summed over DDP ranks); MACs from one forward pass of one sample. When fit starts it
    logs ``model/parameters`` and ``model/macs_per_step`` as hyperparameters to every logger.
    The model must be time-major (logits ``[T, B, classes]``) and expose ``time_steps``.
    """

    def __init__(self, preset: CostPreset = "45nm_fp32") -> None:
        """
        Args:
            preset: energy per operation (E_MAC, E_AC): ``45nm_fp32`` 4.6/0.9 pJ, ``fp16`` 1.5/0.4 pJ, ``int8`` 0.23/0.03 pJ.
        """
        if preset not in COST_PRESETS:
            raise ConfigurationError(f"EnergyEstimate preset must be one of {sorted(COST_PRESETS)}, got {preset!r}")
        self.preset = preset
        self.e_mac, self.e_ac = COST_PRESETS[preset]
        self.layers: dict[str, LayerActivity] = {}
        self.report: EnergyReport | None = None
        self._counts = LayerCounts(width=4)
        self._sample: Tensor | None = None
        self._time_steps = 0
        self._size_logged = False
        self._rule_printed = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not hasattr(pl_module, "time_steps"):
            raise ConfigurationError(
                f"EnergyEstimate needs a spiking module with time_steps (SNNClassifier), got "
                f"{type(pl_module).__name__}; remove EnergyEstimate from trainer.callbacks for an ANN"
            )

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._size_logged:
            return
        images = batch[0]
        complexity = measure_complexity(pl_module, _first_sample(images), _time_steps_of(pl_module, images))
        for logger in trainer.loggers:
            logger.log_hyperparams({"model/parameters": complexity.parameters, "model/macs_per_step": complexity.macs_per_step})
        self._size_logged = True

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sample = None

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        images = batch[0]
        time_steps = _time_steps_of(pl_module, images)
        if self._sample is None:
            self._sample = _first_sample(images).detach().clone()
            self._time_steps = time_steps
            layers = {
                name: module
                for name, module in pl_module.named_modules()
                if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
            }
            self._counts.attach(layers, _input_counts(time_steps), pl_module.device, on_input=True)
        elif time_steps != self._time_steps:
            raise ConfigurationError(
                f"EnergyEstimate saw T={self._time_steps} and then T={time_steps} in one test epoch; "
                f"test with one number of time steps"
            )

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._counts.detach()
        if self._sample is None:
            return
        counts = self._counts.reduced(trainer.strategy)
        complexity = measure_complexity(pl_module, self._sample, self._time_steps)
        self.layers = {
            name: LayerActivity(
                macs=complexity.layer_macs.get(name, 0) / self._time_steps,
                input_rate=nonzeros.item() / max(elements.item(), 1),
                spike_input=non_binary.item() == 0,
                repeated_input=varying.item() == 0,
            )
            for name, (nonzeros, elements, non_binary, varying) in counts.items()
            if elements > 0  # layers the forward pass never calls (e.g. KD projections) cost nothing
        }
        self.report = estimate_energy(self.layers, self._time_steps, self.e_mac, self.e_ac)
        log_reduced(
            pl_module,
            {
                "test/energy_mj": self.report.energy_pj * 1e-9,
                "test/sops": self.report.sops,
                "test/ann_energy_mj": self.report.ann_energy_pj * 1e-9,
            },
        )
        if not self._rule_printed:
            rank_zero_info(self.rule())
            self._rule_printed = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._counts.detach()

    def rule(self) -> str:
        """Return the one-line statement of how the last estimate was computed."""
        mac_layers = [
            f"{name} ({'once: same input at every step' if layer.repeated_input else 'every step'})"
            for name, layer in self.layers.items()
            if not layer.spike_input and layer.macs > 0
        ]
        spike_layers = sum(layer.spike_input for layer in self.layers.values())
        return (
            f"energy per sample ({self.preset}: E_MAC {self.e_mac} pJ, E_AC {self.e_ac} pJ, T={self._time_steps}) = "
            f"E_MAC × MACs of the real-valued-input layers [{', '.join(mac_layers)}] + E_AC × SOPs, "
            f"SOPs = Σ input firing rate × T × MACs over the {spike_layers} spike-input layers; "
            f"ANN = E_MAC × Σ MACs of one step; BN, pooling, attention products and neuron updates are not counted"
        )
