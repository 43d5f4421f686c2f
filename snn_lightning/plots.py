"""Figures that show what a spiking network does: rasters, firing rates, accuracy over time, membranes, events.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state,
nothing to close; Agg renders it), so it can be saved (``fig.savefig("x.png")``), shown in a
notebook, or logged to wandb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from snn_lightning.neurons import SpikingNeuron
from snn_lightning.neurons.dynamics import charge, reset
from snn_lightning.neurons.surrogate import heaviside

__all__ = [
    "accuracy_vs_time_steps",
    "event_frames",
    "firing_rate_bars",
    "membrane_potential",
    "membrane_traces",
    "spike_raster",
]


def _neurons_per_sample(sequence: Tensor) -> Tensor:
    """Return ``[T, B, ...]`` as ``[T, B, N]`` (each sample's neurons flattened), on the CPU as float."""
    if sequence.ndim < 3:
        raise ValueError(f"expected a time-major layer output [T, B, ...], got shape {tuple(sequence.shape)}")
    return sequence.detach().flatten(2).float().cpu()


def spike_raster(spikes: Tensor, num_samples: int = 2, num_neurons: int = 32, layer: str = "") -> Figure:
    """Return a raster of ``spikes [T, B, ...]``: one panel per sample, a tick where a neuron fires at a step.

    Shows the first ``num_samples`` samples and, of those, the ``num_neurons`` neurons that fire most
    (the same neurons in every panel), so a sparse layer still shows activity.

    Args:
        spikes: one layer's output spikes ``[T, B, ...]`` (e.g. from :func:`snn_lightning.callbacks.record_layer`).
        num_samples: samples shown, one panel each.
        num_neurons: neurons shown per panel.
        layer: the layer's name, for the title.
    """
    spikes = _neurons_per_sample(spikes)
    time_steps, batch, _ = spikes.shape
    samples = min(num_samples, batch)
    chosen = spikes[:, :samples].sum((0, 1)).argsort(descending=True, stable=True)[:num_neurons]
    figure = Figure(figsize=(3.2 * samples, 0.6 + 0.12 * len(chosen) + 1.2), layout="constrained")
    axes = figure.subplots(1, samples, sharey=True, squeeze=False)[0]
    for sample, ax in enumerate(axes):
        steps, rows = np.nonzero(spikes[:, sample, chosen].numpy())
        ax.scatter(steps + 1, rows, marker="|", s=120, color="black", linewidths=2)
        ax.set_xlim(0.5, time_steps + 0.5)
        ax.set_ylim(-0.5, len(chosen) - 0.5)
        ax.set_xticks(range(1, time_steps + 1))
        ax.set_xlabel("time step t")
        ax.set_title(f"sample {sample}: {len(steps)} spikes")
    axes[0].set_ylabel(f"neurons ranked by spike count (top {len(chosen)})")
    figure.suptitle(f"Spike raster{f' of {layer}' if layer else ''}")
    return figure


def firing_rate_bars(rates: Mapping[str, float], title: str = "Firing rate per spiking layer") -> Figure:
    """Return a horizontal bar chart of each layer's firing rate (input order, first layer on top) and their mean.

    Args:
        rates: firing rate by layer name (``SpikeStats.table``).
        title: the chart's title.
    """
    if not rates:
        raise ValueError("firing_rate_bars needs at least one layer's rate, got an empty mapping")
    names, values = list(rates), list(rates.values())
    figure = Figure(figsize=(7, 1.0 + 0.3 * len(names)), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(names))
    ax.barh(positions, values, color="tab:blue")
    mean = sum(values) / len(values)
    ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.3f}")
    ax.set_yticks(positions, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("firing rate (fraction of 1s over T, neurons and samples)")
    ax.set_xlim(0, max(max(values) * 1.15, 1e-3))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    return figure


def accuracy_vs_time_steps(accuracies: Mapping[str, Sequence[float]]) -> Figure:
    """Return the accuracy of the running-mean prediction after ``t = 1..T`` steps, one line per stage.

    Args:
        accuracies: accuracies at ``t = 1..T`` by stage name (``PerStepAccuracy.accuracies``: ``val``, ``test``).
    """
    if not accuracies:
        raise ValueError("accuracy_vs_time_steps needs at least one stage's accuracies, got an empty mapping")
    figure = Figure(figsize=(5, 3.5), layout="constrained")
    ax = figure.subplots()
    for stage, values in accuracies.items():
        steps = np.arange(1, len(values) + 1)
        ax.plot(steps, values, marker="o", label=stage)
    longest = max(len(values) for values in accuracies.values())
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("time steps t (prediction = mean of the first t logits)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(title="stage")
    ax.set_title("Accuracy vs time steps")
    return figure


@torch.no_grad()
def membrane_potential(neuron: SpikingNeuron, currents: Tensor) -> tuple[Tensor, Tensor]:
    """Return the pre-spike membrane ``H [T, ...]`` and spikes ``[T, ...]`` of ``neuron`` driven by ``currents [T, ...]``.

    Re-runs the neuron's equations step by step (:func:`~snn_lightning.neurons.dynamics.charge`
    and ``reset``), so the spikes equal the layer's output. Only neurons that run
    :class:`SpikingNeuron`'s own forward (LIF, PLIF, IF) are supported.

    Args:
        neuron: the layer's neuron module (its leak, threshold and reset are used).
        currents: the neuron's input ``[T, ...]`` (e.g. from :func:`snn_lightning.callbacks.record_layer`).
    """
    if type(neuron).forward is not SpikingNeuron.forward:
        raise ValueError(
            f"membrane_potential re-runs SpikingNeuron's LIF equations, but {type(neuron).__name__} has its own "
            f"forward; choose a layer with a LIF, PLIF or IF neuron"
        )
    rest = 0.0 if neuron.v_reset is None else neuron.v_reset
    currents = currents.float()
    v = torch.full_like(currents[0], rest)
    membranes, spikes = [], []
    for x in currents:
        h = charge(v, x, neuron.inv_tau(), rest, neuron.decay_input)
        s = heaviside(h - neuron.v_threshold)
        v = reset(h, s, neuron.v_threshold, neuron.v_reset)
        membranes.append(h)
        spikes.append(s)
    return torch.stack(membranes), torch.stack(spikes)


def membrane_traces(neuron: SpikingNeuron, currents: Tensor, num_neurons: int = 4, layer: str = "") -> Figure:
    """Return the membrane of a few neurons of the first sample of ``currents [T, B, ...]`` (the layer's input).

    One panel per neuron: the input current, the pre-spike membrane ``H[t]``, the threshold and the
    spikes. Shows ``num_neurons`` neurons whose membrane comes closest to (or over) the threshold,
    those that fire at some steps but not all first (they show both charging and reset).

    Args:
        neuron: the layer's neuron module.
        currents: the neuron's input ``[T, B, ...]``; the first sample is shown.
        num_neurons: neurons shown, one panel each.
        layer: the layer's name, for the title.
    """
    membrane, spikes = membrane_potential(neuron, currents.detach())
    membrane, spikes = _neurons_per_sample(membrane)[:, 0], _neurons_per_sample(spikes)[:, 0]
    inputs = _neurons_per_sample(currents)[:, 0]
    by_peak = membrane.amax(0).argsort(descending=True, stable=True)
    count = spikes.sum(0)[by_peak]
    sometimes = ((count > 0) & (count < len(spikes))).int()
    chosen = by_peak[sometimes.argsort(descending=True, stable=True)][:num_neurons].tolist()
    steps = np.arange(1, membrane.shape[0] + 1)
    figure = Figure(figsize=(3.2 * len(chosen), 3.8), layout="constrained")
    axes = figure.subplots(1, len(chosen), sharey=True, squeeze=False)[0]
    for ax, index in zip(axes, chosen):
        ax.plot(steps, inputs[:, index], color="tab:gray", marker=".", linestyle=":", label="input current X[t]")
        ax.plot(steps, membrane[:, index], color="tab:blue", marker="o", label="membrane H[t]")
        ax.axhline(neuron.v_threshold, color="tab:red", linestyle="--", label="threshold")
        fired = spikes[:, index].numpy() > 0
        ax.scatter(steps[fired], membrane[fired, index], s=160, facecolors="none", edgecolors="tab:red", label="spike")
        ax.set_xticks(steps)
        ax.set_xlabel("time step t")
        ax.set_title(f"neuron {index}")
    axes[0].set_ylabel("potential")
    legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    figure.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=len(legend))
    figure.suptitle(f"Membrane potential{f' of {layer}' if layer else ''} (sample 0)")
    return figure


def event_frames(frames: Tensor, max_frames: int = 8, on_channel: int = 1) -> Figure:
    """Return a clip of event frames ``[T, P, H, W]`` as a row of images on white: ON events red, OFF events blue.

    Colour intensity is the event count scaled by the clip's largest count. ``on_channel`` is the
    polarity channel of ON events (tonic puts polarity 1, ON, in channel 1); with a single channel
    every event is drawn red.

    Args:
        frames: one clip of event counts ``[T, P, H, W]`` (one sample of a ``[T, B, P, H, W]`` batch).
        max_frames: frames shown, from the first.
        on_channel: the polarity channel holding ON events (0 or 1).
    """
    if frames.ndim != 4 or frames.shape[1] not in (1, 2) or on_channel not in (0, 1):
        raise ValueError(
            f"event_frames expects one clip [T, P, H, W] with P = 1 or 2 and on_channel 0 or 1, got shape "
            f"{tuple(frames.shape)} and on_channel={on_channel}; pass one sample of a [T, B, P, H, W] batch"
        )
    frames = frames.detach().float().cpu()
    frames = frames / frames.max().clamp_min(1e-12)
    time_steps, polarities = frames.shape[:2]
    on = frames[:, on_channel if polarities == 2 else 0]
    off = frames[:, 1 - on_channel] if polarities == 2 else torch.zeros_like(on)
    # White minus the complementary colours: ON removes green and blue (red), OFF removes red and green (blue).
    images = torch.stack((1 - off, 1 - on - off, 1 - on), dim=-1).clamp(0, 1).numpy()
    shown = min(max_frames, time_steps)
    figure = Figure(figsize=(1.8 * shown, 2.3), layout="constrained")
    axes = figure.subplots(1, shown, squeeze=False)[0]
    for step, ax in enumerate(axes):
        ax.imshow(images[step], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t = {step + 1}")
    figure.suptitle(f"Event frames: ON red, OFF blue ({shown} of {time_steps} steps)")
    return figure
