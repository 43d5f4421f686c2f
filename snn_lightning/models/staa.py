"""STAA-SNN's spatial-temporal attention aggregator (Zhang et al., CVPR 2025), one module per part.

The aggregator replaces a layer's LIF: on the input current ``X [T, B, C, H, W]`` (after conv +
BN, plus the residual) it computes

    X' = PE(X)                                        temporal position encoding
    A  = SA(GC(X'))                                   global context, then step attention
    Y  = TSRD(X', A)                                  training: A or X' per sample and step
    S  = AdaptiveLIF(Y)                               binary spikes

Attention acts on currents only, never on spikes, so the layer still emits binary spikes and the
next layer stays spike-driven; the attention itself computes on real values (MACs). The exact
equations are not public (STAA-SNN, arXiv 2503.02689); the choices below are this framework's
working hypothesis. Every part starts as the identity (zero-initialised last layer), so an
untrained STAA network equals its backbone, and every part is causal in time, so evaluating at
fewer steps gives exactly the first steps of the longer run.

``STAA`` is the template a network takes as its ``neuron``: it builds one ``STAALayer`` per layer
for that layer's channel count, with each part switched on or off by a flag (the paper's ablation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import fold_time, is_time_major, unfold_time
from snn_lightning.neurons import AdaptiveLIF, NeuronTemplate, SpikingNeuron

__all__ = ["TemporalPositionEncoding", "GlobalContext", "StepAttention", "TimeStepDropout", "STAALayer", "STAA"]


def _check_sequence(x_seq: Tensor, channels: int, part: str) -> None:
    """Raise if ``x_seq`` is not ``[T, B, channels, H, W]``."""
    if not is_time_major(x_seq) or x_seq.shape[2] != channels:
        raise ValueError(
            f"{part} expects currents [T, B, {channels}, H, W], got shape {tuple(x_seq.shape)}; "
            f"build it for the layer's channel count"
        )


class TemporalPositionEncoding(nn.Module):
    """Learnable temporal position encoding: ``X[t] + P[t]``, ``P ∈ R^{T × C × 1 × 1}``, zero-initialised.

    ``P`` has one row per step the network is built with; a run over fewer steps (the model's
    ``eval_time_steps``) adds its first rows ``P[:k]``.
    """

    def __init__(self, channels: int, time_steps: int) -> None:
        """
        Args:
            channels: channels C of the current.
            time_steps: the network's number of steps T, one row each.
        """
        super().__init__()
        if time_steps < 1:
            raise ConfigurationError(f"STAA's position encoding needs time_steps >= 1, got {time_steps}")
        self.channels = channels
        self.time_steps = time_steps
        self.encoding = nn.Parameter(torch.zeros(time_steps, channels, 1, 1))

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return ``x_seq [T, B, C, H, W]`` plus the encoding of each step."""
        _check_sequence(x_seq, self.channels, "TemporalPositionEncoding")
        time_steps = x_seq.shape[0]
        if time_steps > self.time_steps:
            raise ConfigurationError(
                f"the STAA position encoding has rows for the network's time_steps={self.time_steps} but the input "
                f"has T={time_steps} steps; feed at most {self.time_steps} frames, or build the model with "
                f"--model.time_steps {time_steps}"
            )
        return x_seq + self.encoding[:time_steps].unsqueeze(1)

    def no_weight_decay(self) -> set[str]:
        """Return the names of the parameters the optimizer leaves without weight decay: the encoding."""
        return {"encoding"}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, time_steps={self.time_steps}"


class GlobalContext(nn.Module):
    """Global Context block (GCNet-style self-attention), per step and sample, on the real-valued current.

    The paper calls its GC "spike-driven self-attention"; this block acts on currents (after conv +
    BN), so its products are multiply-accumulates, not spike-driven accumulates, and
    ``EnergyEstimate`` charges its layers as MACs. The layer's output is still binary spikes.

    With key ``k`` (C → 1), value ``v`` and query ``q`` (C → C/r) 1×1 convolutions::

        a = softmax_{HW}(k(X))                       where to look
        c = sum_{HW} a · v(X)                         global context   [C/r]
        g = W_o ReLU(LayerNorm(mean_{HW} q(X) + c))   channel logits   [C]
        Y = X · 2 sigmoid(g)                          channels re-weighted; W_o = 0 makes it the identity

    ``v`` and ``q`` are linear, so they are applied after pooling (``nn.Linear`` on ``[C]``), which
    computes the same values for ``HW`` times fewer multiply-accumulates. The 1×1 convolutions are
    ``nn.Linear`` layers over channels, so the ResNet's Kaiming init (meant for conv + BN, far too
    large for a single-channel key) leaves their default init alone.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        """
        Args:
            channels: channels C of the current.
            reduction: bottleneck ratio r; the query and value have ``max(1, C // r)`` channels.
        """
        super().__init__()
        if reduction < 1:
            raise ConfigurationError(f"STAA reduction must be >= 1, got {reduction}")
        hidden = max(1, channels // reduction)
        self.channels = channels
        # No key bias: the softmax over space ignores a constant, so a bias would never get a gradient.
        self.key = nn.Linear(channels, 1, bias=False)
        self.value = nn.Linear(channels, hidden, bias=False)
        self.query = nn.Linear(channels, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return the re-weighted currents ``[T, B, C, H, W]``."""
        _check_sequence(x_seq, self.channels, "GlobalContext")
        x = fold_time(x_seq)
        attention = self.key(x.movedim(1, -1)).squeeze(-1).flatten(1).softmax(-1)  # [TB, HW]
        pooled = torch.einsum("nchw,nhw->nc", x, attention.view_as(x[:, 0]))
        context = self.value(pooled) + self.query(x.mean(dim=(-2, -1)))
        gate = 2 * torch.sigmoid(self.out(F.relu(self.norm(context))))
        return unfold_time(x * gate[..., None, None], x_seq.shape[0])


class StepAttention(nn.Module):
    """Step attention: squeeze space, excite across time steps; weights per sample, step and channel.

    With ``z[b, t] = mean_{HW} X[t, b]`` (``[B, C, T]``) and causal 1-D convolutions over T::

        w = 2 sigmoid(W_2 ReLU(W_1 *_t z))     W_1: C → C/r, kernel k over steps t-k+1..t; W_2: C/r → C (1×1)
        Y[t] = X[t] · w[:, :, t]               W_2 = 0 makes it the identity

    Being causal and independent of T, it works for any number of steps.
    """

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 3) -> None:
        """
        Args:
            channels: channels C of the current.
            reduction: bottleneck ratio r of the excitation.
            kernel_size: number of steps (the current one and earlier) each weight looks at.
        """
        super().__init__()
        if reduction < 1 or kernel_size < 1:
            raise ConfigurationError(
                f"STAA reduction and temporal_kernel must be >= 1, got {reduction} and {kernel_size}"
            )
        hidden = max(1, channels // reduction)
        self.channels = channels
        self.kernel_size = kernel_size
        self.squeeze = nn.Conv1d(channels, hidden, kernel_size)
        self.excite = nn.Conv1d(hidden, channels, kernel_size=1)
        nn.init.zeros_(self.excite.weight)
        nn.init.zeros_(self.excite.bias)

    def weights(self, x_seq: Tensor) -> Tensor:
        """Return the step weights ``w [B, C, T]`` of the currents ``[T, B, C, H, W]``."""
        _check_sequence(x_seq, self.channels, "StepAttention")
        z = x_seq.mean(dim=(-2, -1)).permute(1, 2, 0)  # [B, C, T]
        hidden = F.relu(self.squeeze(F.pad(z, (self.kernel_size - 1, 0))))
        return 2 * torch.sigmoid(self.excite(hidden))

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return the currents ``[T, B, C, H, W]`` weighted per sample, step and channel."""
        return x_seq * self.weights(x_seq).permute(2, 0, 1)[..., None, None]


class TimeStepDropout(nn.Module):
    """Time-step random dropout (TSRD): in training, per sample and step, skip the attention with probability p.

    ``Y[t, b] = raw[t, b]`` with probability ``p``, else ``attended[t, b]``; the identity on
    ``attended`` in evaluation mode, so inference is deterministic.
    """

    def __init__(self, p: float = 0.1) -> None:
        """
        Args:
            p: probability that a sample's step uses the raw current instead of the attended one.
        """
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigurationError(f"STAA step_dropout must lie in [0, 1), got {p}; the paper uses 0.1")
        self.p = p

    def forward(self, raw: Tensor, attended: Tensor) -> Tensor:
        """Return ``attended [T, B, ...]`` with a random ``p`` of its (step, sample) slices replaced by ``raw``."""
        if not self.training or self.p == 0.0:
            return attended
        keep_raw = torch.rand(raw.shape[:2], device=raw.device) < self.p
        return torch.where(keep_raw.view(*raw.shape[:2], *([1] * (raw.ndim - 2))), raw, attended)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class STAALayer(nn.Module):
    """One STAA layer: PE → GC → SA (with TSRD) on the current, then a spiking neuron; emits binary spikes.

    Each part may be None (switched off); with all of them None the layer is its neuron.
    """

    def __init__(
        self,
        neuron: nn.Module,
        position_encoding: TemporalPositionEncoding | None = None,
        global_context: GlobalContext | None = None,
        step_attention: StepAttention | None = None,
        step_dropout: TimeStepDropout | None = None,
    ) -> None:
        """
        Args:
            neuron: spiking neuron mapping currents ``[T, B, C, H, W]`` to spikes (``AdaptiveLIF`` in STAA-SNN).
            position_encoding: added to the current first; None leaves it out.
            global_context: channel re-weighting from a global spatial context; None leaves it out.
            step_attention: re-weighting across time steps; None leaves it out.
            step_dropout: replaces the attended current by the position-encoded one at random steps in training.
        """
        super().__init__()
        self.position_encoding = position_encoding
        self.global_context = global_context
        self.step_attention = step_attention
        self.step_dropout = step_dropout
        self.neuron = neuron

    def forward(self, x_seq: Tensor) -> Tensor:
        """Return spikes ``[T, B, C, H, W]`` for input currents ``[T, B, C, H, W]``."""
        raw = x_seq if self.position_encoding is None else self.position_encoding(x_seq)
        attended = raw
        if self.global_context is not None:
            attended = self.global_context(attended)
        if self.step_attention is not None:
            attended = self.step_attention(attended)
        if self.step_dropout is not None:
            attended = self.step_dropout(raw, attended)
        return self.neuron(attended)


class STAA(nn.Module):
    """Template of STAA-SNN's aggregator: a network given it as ``neuron`` builds one ``STAALayer`` per layer.

    Flags switch each part, so the paper's ablation (baseline → +GC → +PE → +SA → +TSRD) is a
    matter of configuration; with every part off the layers are plain ``neuron``s. ``stages``
    restricts the aggregator to some stages (0 the stem, 1.. the residual stages); layers
    elsewhere get ``neuron`` alone. The template itself is never run; it is a
    :class:`~snn_lightning.neurons.NeuronTemplate`, as its ``neuron`` is.
    """

    def __init__(
        self,
        position_encoding: bool = True,
        global_context: bool = True,
        step_attention: bool = True,
        step_dropout: float = 0.1,
        reduction: int = 4,
        temporal_kernel: int = 3,
        stages: list[int] | None = None,
        neuron: SpikingNeuron | None = None,
    ) -> None:
        """
        Args:
            position_encoding: add the learnable temporal position encoding (PE) to the current.
            global_context: re-weight channels with the Global Context block (GC).
            step_attention: re-weight each time step's channels with step attention (SA).
            step_dropout: TSRD probability of skipping the attention per sample and step in training; 0 turns TSRD off.
            reduction: bottleneck ratio r of GC and SA.
            temporal_kernel: number of steps (current and earlier) SA's weights look at.
            stages: stages that get the aggregator (0 the stem, 1.. the residual stages); null means all.
            neuron: spiking neuron template after the aggregator; null means ``AdaptiveLIF()``.
        """
        super().__init__()
        # The parts check their own settings when a network builds them; only `stages` is checked here.
        if stages is not None and (not stages or min(stages) < 0):
            raise ConfigurationError(
                f"STAA stages must be a non-empty list of stage numbers >= 0 (0 the stem), got {list(stages)}; "
                f"null puts the aggregator everywhere"
            )
        self.position_encoding = position_encoding
        self.global_context = global_context
        self.step_attention = step_attention
        self.step_dropout = step_dropout
        self.reduction = reduction
        self.temporal_kernel = temporal_kernel
        self.stages = None if stages is None else sorted(set(stages))
        self.neuron = AdaptiveLIF() if neuron is None else neuron

    def for_stage(self, stage: int, num_stages: int) -> NeuronTemplate:
        """Return the template of ``stage`` in a network of ``num_stages`` residual stages: self, or the bare neuron."""
        if self.stages is not None and self.stages[-1] > num_stages:
            raise ConfigurationError(
                f"STAA stages {self.stages} name a stage beyond this network's {num_stages} residual stages; "
                f"use 0 (the stem) to {num_stages}"
            )
        return self if self.stages is None or stage in self.stages else self.neuron

    def build(self, channels: int, time_steps: int) -> STAALayer:
        """Return a fresh ``STAALayer`` for a layer with ``channels`` channels, with the parts switched on.

        Args:
            channels: channels C of the layer's current.
            time_steps: the network's steps T, the position encoding's rows.
        """
        attention = self.global_context or self.step_attention
        encoding = TemporalPositionEncoding(channels, time_steps) if self.position_encoding else None
        step_attention = StepAttention(channels, self.reduction, self.temporal_kernel) if self.step_attention else None
        return STAALayer(
            neuron=self.neuron.build(channels, time_steps),
            position_encoding=encoding,
            global_context=GlobalContext(channels, self.reduction) if self.global_context else None,
            step_attention=step_attention,
            step_dropout=TimeStepDropout(self.step_dropout) if attention and self.step_dropout != 0 else None,
        )

    def forward(self, x_seq: Tensor) -> Tensor:
        """Raise: the template is not a layer; a network calls ``build(channels, time_steps)`` for each layer."""
        raise TypeError(
            "STAA is a template; give it to a network as its neuron, or call STAA.build(channels, time_steps)"
        )

    def extra_repr(self) -> str:
        return (
            f"position_encoding={self.position_encoding}, "
            f"global_context={self.global_context}, step_attention={self.step_attention}, "
            f"step_dropout={self.step_dropout}, reduction={self.reduction}, "
            f"temporal_kernel={self.temporal_kernel}, stages={self.stages}"
        )
