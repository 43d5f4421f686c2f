"""Energy estimate of a spiking network on the test set, by the accounting SNN papers use, plus memory traffic.

Per conv/linear layer ``l``, with ``MACs_l`` its multiply-accumulates for one sample and one time
step (from the layer shapes), the papers' rule (e.g. Spikformer, STAA-SNN) is:

* the **encoding** layer (the first one the forward pass calls; it sees the real-valued image or
  event frames) multiplies: ``MACs_l`` at ``E_MAC``, once if its input is the same at every step
  (direct encoding repeats the image, so its currents are computed once), else ``T`` times;
* a layer fed by **spikes** only accumulates a weight per spike: ``SOPs_l = fr_l × T × MACs_l`` at
  ``E_AC``, with ``fr_l`` the firing rate of its input;
* a layer fed by **pooled spikes** (an average pool of spikes, values in [0, 1]: the ResNets'
  stem pool, pooled shortcuts, the global pool before the FC) counts as spike-driven too, since
  the pool merges into the next layer's weights: ``SOPs_l = fr_l × T × MACs_l`` with ``fr_l`` the
  mean input value (the firing rate of the spikes it averages); ``pooled_spikes="mac"`` charges
  these layers as multiply-accumulates at every step instead;
* any other layer with a **real**-valued input (attention layers acting on currents) multiplies,
  like the encoding layer;
* the equivalent ANN runs every layer once: ``E_MAC × Σ MACs_l``.

The kind of input is read from the values each layer sees on the test set, so a layer whose input
was zero throughout counts as spike-driven (it performs no operations).

BN (folded into the weights at inference), pooling, attention products and neuron updates are
not counted, as is usual in SNN papers. That proxy also ignores memory traffic, which Yan et al.
(arXiv 2409.08290) show can dominate; beside it a memory-inclusive estimate adds the SRAM accesses
of a simple dataflow, per layer and sample: the SNN reads the layer's weights and its input at
every step (spikes 1 bit each, other inputs a word; a repeated input once) and reads and writes
every output's membrane potential or partial sum at every step; the ANN reads weights and input
once and writes its outputs once. Words have the preset's width, every bit costs ``E_BIT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from snn_lightning.callbacks.spike_stats import CountFn, LayerCounts, log_reduced
from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import first_samples
from snn_lightning.models import measure_complexity

__all__ = [
    "COST_PRESETS",
    "EnergyCosts",
    "EnergyEstimate",
    "EnergyReport",
    "LayerActivity",
    "LayerEnergy",
    "estimate_energy",
]

CostPreset = Literal["45nm_fp32", "fp16", "int8"]
InputKind = Literal["encoding", "spikes", "pooled_spikes", "real"]
PooledSpikesRule = Literal["ac", "mac"]

# One bit read from or written to an 8 KB SRAM: 10 pJ per 64-bit access (Horowitz 2014, 45 nm CMOS).
SRAM_PJ_PER_BIT = 10 / 64


@dataclass(frozen=True)
class EnergyCosts:
    """Energy per operation in picojoules and the word width of activations and weights."""

    e_mac: float  # one multiply-accumulate
    e_ac: float  # one accumulate
    word_bits: int  # bits of a weight, a membrane potential or a real-valued activation
    e_bit: float = SRAM_PJ_PER_BIT  # one bit of on-chip memory traffic


# Horowitz 2014, 45 nm CMOS: fp32 4.6 / 0.9 pJ per MAC / AC, fp16 1.5 / 0.4, int8 0.23 / 0.03.
COST_PRESETS: dict[str, EnergyCosts] = {
    "45nm_fp32": EnergyCosts(4.6, 0.9, 32),
    "fp16": EnergyCosts(1.5, 0.4, 16),
    "int8": EnergyCosts(0.23, 0.03, 8),
}


@dataclass(frozen=True)
class LayerActivity:
    """What the energy of one conv/linear layer depends on, for one sample."""

    macs: float  # multiply-accumulates of one time step, from the layer shapes
    input_rate: float  # mean input value: the firing rate of spikes, or of the spikes a pool averages
    input_kind: InputKind  # encoding (first layer), spikes (0/1), pooled_spikes (values in [0, 1]) or real
    repeated_input: bool  # the input was the same at every time step
    weights: int = 0  # weight and bias elements
    inputs: float = 0  # input elements of one time step
    outputs: float = 0  # output elements of one time step


@dataclass(frozen=True)
class LayerEnergy:
    """Operations and energy (pJ) of one layer for one sample, SNN and equivalent ANN."""

    charged_as: Literal["MAC", "AC"]
    operations: float  # MACs or SOPs over the whole inference
    energy_pj: float  # the SOP proxy: E_MAC × MACs or E_AC × SOPs
    memory_pj: float  # memory traffic of the SNN
    ann_macs: float  # MACs of one step: the equivalent ANN's operations
    ann_energy_pj: float  # E_MAC × ann_macs
    ann_memory_pj: float  # memory traffic of the ANN


@dataclass(frozen=True)
class EnergyReport:
    """Operations and energy of one sample (one inference over ``time_steps`` steps), in total and per layer."""

    time_steps: int
    layers: dict[str, LayerEnergy]

    @property
    def macs(self) -> float:
        """Multiply-accumulates of the SNN (layers charged as MACs)."""
        return sum(layer.operations for layer in self.layers.values() if layer.charged_as == "MAC")

    @property
    def sops(self) -> float:
        """Synaptic operations (accumulates) of the spike-driven layers."""
        return sum(layer.operations for layer in self.layers.values() if layer.charged_as == "AC")

    @property
    def energy_pj(self) -> float:
        """E_MAC × MACs + E_AC × SOPs: the papers' proxy."""
        return sum(layer.energy_pj for layer in self.layers.values())

    @property
    def energy_with_memory_pj(self) -> float:
        """The proxy plus the SNN's memory traffic."""
        return self.energy_pj + sum(layer.memory_pj for layer in self.layers.values())

    @property
    def ann_macs(self) -> float:
        """Σ MACs of one step: the equivalent ANN."""
        return sum(layer.ann_macs for layer in self.layers.values())

    @property
    def ann_energy_pj(self) -> float:
        """E_MAC × Σ MACs of one step."""
        return sum(layer.ann_energy_pj for layer in self.layers.values())

    @property
    def ann_energy_with_memory_pj(self) -> float:
        """The ANN's compute plus its memory traffic."""
        return self.ann_energy_pj + sum(layer.ann_memory_pj for layer in self.layers.values())

    def table(self) -> str:
        """Return one line per layer: how it is charged, its operations and energies in pJ."""
        rows = [f"{'layer':<32} {'as':<4} {'operations':>12} {'energy pJ':>12} {'+ memory pJ':>12} {'ANN pJ':>12}"]
        rows += [
            f"{name:<32} {layer.charged_as:<4} {layer.operations:>12.4g} {layer.energy_pj:>12.4g} "
            f"{layer.memory_pj:>12.4g} {layer.ann_energy_pj + layer.ann_memory_pj:>12.4g}"
            for name, layer in self.layers.items()
        ]
        return "\n".join(rows)


def _layer_energy(
    layer: LayerActivity, time_steps: int, costs: EnergyCosts, pooled_spikes: PooledSpikesRule
) -> LayerEnergy:
    """Return one layer's operations and energies for one sample (see the module docstring for the rule)."""
    word = costs.word_bits
    accumulates = layer.input_kind == "spikes" or (layer.input_kind == "pooled_spikes" and pooled_spikes == "ac")
    input_reads = time_steps if not layer.repeated_input else 1
    if accumulates:
        operations = layer.input_rate * time_steps * layer.macs
        energy = costs.e_ac * operations
    else:
        operations = layer.macs * input_reads
        energy = costs.e_mac * operations
    input_bits = 1 if layer.input_kind == "spikes" else word
    snn_bits = (
        time_steps * layer.weights * word
        + input_reads * layer.inputs * input_bits
        + 2 * time_steps * layer.outputs * word
    )
    ann_bits = (layer.weights + layer.inputs + layer.outputs) * word
    return LayerEnergy(
        charged_as="AC" if accumulates else "MAC",
        operations=operations,
        energy_pj=energy,
        memory_pj=costs.e_bit * snn_bits,
        ann_macs=layer.macs,
        ann_energy_pj=costs.e_mac * layer.macs,
        ann_memory_pj=costs.e_bit * ann_bits,
    )


def _check_pooled_spikes(pooled_spikes: str) -> None:
    """Raise ConfigurationError unless ``pooled_spikes`` names one of the two rules."""
    if pooled_spikes not in get_args(PooledSpikesRule):
        raise ConfigurationError(f"pooled_spikes must be 'ac' (the papers' rule) or 'mac', got {pooled_spikes!r}")


def estimate_energy(
    layers: Mapping[str, LayerActivity], time_steps: int, costs: EnergyCosts, pooled_spikes: PooledSpikesRule = "ac"
) -> EnergyReport:
    """Return the SNN's and the equivalent ANN's operations and energy (pJ) for one sample, per layer.

    Args:
        layers: every conv/linear layer's activity, by name, in the order the forward pass calls them.
        time_steps: number of steps T of one inference.
        costs: energy per operation and per bit of memory traffic, and the word width.
        pooled_spikes: ``ac`` charges layers fed by pooled spikes as accumulates (the papers' rule),
            ``mac`` as multiply-accumulates at every step.
    """
    _check_pooled_spikes(pooled_spikes)
    return EnergyReport(
        time_steps, {name: _layer_energy(layer, time_steps, costs, pooled_spikes) for name, layer in layers.items()}
    )


# Counts per layer: non-zeros, elements, sum of values, non-binary calls, calls with values outside [0, 1], time-varying calls.
_COUNTS = 6


def _input_counts(time_steps: int) -> CountFn:
    """Return the pre-hook that counts a layer's input for ``time_steps`` steps (float64, see ``_COUNTS``)."""

    def count(module: nn.Module, x: Tensor) -> Tensor:
        non_binary = ((x != 0) & (x != 1)).any()
        outside_unit = ((x < 0) | (x > 1)).any()
        # Inputs are time-major ([T, B, ...] or folded [T*B, ...]), so step t is the t-th slice of T.
        if time_steps > 1 and x.numel() % time_steps == 0:
            steps = x.reshape(time_steps, -1)
            varying = (steps[1:] != steps[:1]).any()
        else:
            varying = torch.ones((), dtype=torch.bool, device=x.device)
        counts = (x.count_nonzero(), x.numel(), x.detach().double().sum(), non_binary, outside_unit, varying)
        return torch.stack([torch.as_tensor(c, dtype=torch.float64, device=x.device) for c in counts])

    return count


def _input_kind(first_layer: bool, non_binary: float, outside_unit: float) -> InputKind:
    """Return what a layer's input was from its counts of non-binary calls and calls with values outside [0, 1]."""
    if first_layer:
        return "encoding"
    if non_binary == 0:
        return "spikes"
    return "pooled_spikes" if outside_unit == 0 else "real"


def _weights(module: nn.Module) -> int:
    """Return the number of weight and bias elements of a conv/linear ``module``."""
    return sum(parameter.numel() for parameter in module.parameters(recurse=False))


class EnergyEstimate(L.Callback):
    """Estimate the energy of one test inference.

    At test end it logs, per sample: ``test/energy_mj`` (SNN, the papers' proxy), ``test/sops``
    (synaptic operations), ``test/ann_energy_mj`` (the same network as an ANN), and the
    memory-inclusive ``test/energy_with_memory_mj`` and ``test/ann_energy_with_memory_mj``; it
    prints the rule used once and writes the per-layer table to ``energy_per_layer.txt`` in the
    run's log folder (printed when the run has no logger). Input rates come from forward pre-hooks on
    every conv/linear layer during the test epoch (summed over DDP ranks); MACs and shapes from
    one forward pass of one sample. The model must be time-major (logits ``[T, B, classes]``) and
    expose ``active_time_steps``, the steps it runs at test (``eval_time_steps`` when set).
    """

    def __init__(self, preset: CostPreset = "45nm_fp32", pooled_spikes: PooledSpikesRule = "ac") -> None:
        """
        Args:
            preset: energy per operation (E_MAC, E_AC) and word width: ``45nm_fp32`` 4.6/0.9 pJ, 32 bits; ``fp16`` 1.5/0.4 pJ, 16 bits; ``int8`` 0.23/0.03 pJ, 8 bits.
            pooled_spikes: how a layer fed by average-pooled spikes is charged: ``ac`` accumulates at the pooled spikes' rate (the papers' rule), ``mac`` multiply-accumulates at every step.
        """
        if preset not in COST_PRESETS:
            raise ConfigurationError(f"EnergyEstimate preset must be one of {sorted(COST_PRESETS)}, got {preset!r}")
        _check_pooled_spikes(pooled_spikes)
        self.preset = preset
        self.costs = COST_PRESETS[preset]
        self.pooled_spikes = pooled_spikes
        self.layers: dict[str, LayerActivity] = {}
        self.report: EnergyReport | None = None
        self._counts = LayerCounts(width=_COUNTS, dtype=torch.float64)
        self._sample: Tensor | None = None
        self._time_steps = 0
        self._rule_printed = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not hasattr(pl_module, "active_time_steps"):
            raise ConfigurationError(
                f"EnergyEstimate needs a spiking module with active_time_steps (SNNClassifier), got "
                f"{type(pl_module).__name__}; remove EnergyEstimate from trainer.callbacks for an ANN"
            )

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sample = None

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._sample is None:
            time_steps = self._time_steps = pl_module.active_time_steps
            self._sample = first_samples(batch[0], 1).detach().clone()
            layers = {
                name: module
                for name, module in pl_module.named_modules()
                if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
            }
            self._counts.attach(layers, _input_counts(time_steps), pl_module.device, on_input=True)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._counts.detach()
        if self._sample is None:
            return
        counts = self._counts.reduced(trainer.strategy)
        complexity = measure_complexity(pl_module, self._sample, self._time_steps)
        modules = dict(pl_module.named_modules())
        steps = self._time_steps
        # Call order of the probe pass; layers the forward pass never calls (e.g. KD projections) cost nothing.
        called = [name for name in complexity.layer_macs if counts[name][1] > 0]
        self.layers = {}
        for order, name in enumerate(called):
            nonzeros, elements, total, non_binary, outside_unit, varying = counts[name].tolist()
            inputs, outputs = complexity.layer_elements[name]
            self.layers[name] = LayerActivity(
                macs=complexity.layer_macs[name] / steps,
                input_rate=total / elements,
                input_kind=_input_kind(order == 0, non_binary, outside_unit),
                repeated_input=varying == 0,
                weights=_weights(modules[name]),
                inputs=inputs / steps,
                outputs=outputs / steps,
            )
        self.report = estimate_energy(self.layers, steps, self.costs, self.pooled_spikes)
        log_reduced(
            pl_module,
            {
                "test/energy_mj": self.report.energy_pj * 1e-9,
                "test/sops": self.report.sops,
                "test/ann_energy_mj": self.report.ann_energy_pj * 1e-9,
                "test/energy_with_memory_mj": self.report.energy_with_memory_pj * 1e-9,
                "test/ann_energy_with_memory_mj": self.report.ann_energy_with_memory_pj * 1e-9,
            },
        )
        if not self._rule_printed:
            rank_zero_info(f"{self.rule()}\n{self._per_layer(trainer)}")
            self._rule_printed = True

    def _per_layer(self, trainer: L.Trainer) -> str:
        """Return the per-layer table, or where it was written when the run has a logger (and so a run folder)."""
        table = self.report.table()
        if not trainer.loggers or trainer.log_dir is None or not trainer.is_global_zero:
            return table
        path = Path(trainer.log_dir) / "energy_per_layer.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{self.rule()}\n\n{table}\n")
        return f"energy per layer: {path}"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._counts.detach()

    def rule(self) -> str:
        """Return the statement of how the last estimate was computed."""
        kinds = {
            kind: [name for name, layer in self.layers.items() if layer.input_kind == kind]
            for kind in InputKind.__args__
        }
        costs = self.costs
        pooled = "E_AC × SOPs at the pooled spikes' rate" if self.pooled_spikes == "ac" else "E_MAC × MACs × T"
        encoding = [
            f"{name} ({'once: same input at every step' if self.layers[name].repeated_input else 'every step'})"
            for name in kinds["encoding"] + kinds["real"]
        ]
        return (
            f"energy per sample ({self.preset}: E_MAC {costs.e_mac} pJ, E_AC {costs.e_ac} pJ, T={self._time_steps}) = "
            f"E_MAC × MACs of the encoding and real-valued-input layers [{', '.join(encoding)}] "
            f"+ E_AC × SOPs of the {len(kinds['spikes'])} spike-input layers (SOPs = input firing rate × T × MACs) "
            f"+ for the {len(kinds['pooled_spikes'])} pooled-spike-input layers [{', '.join(kinds['pooled_spikes'])}] "
            f"{pooled}; ANN = E_MAC × Σ MACs of one step; BN, pooling, attention products and neuron updates are "
            f"not counted. With memory: + {costs.e_bit:.3g} pJ per bit of SRAM traffic ({costs.word_bits}-bit words; "
            f"SNN: weights, input and membrane read/write every step; ANN: weights, input, output once)"
        )
