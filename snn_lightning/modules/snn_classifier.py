"""LightningModule that trains a spiking network on logits ``[T, B, classes]``."""

from __future__ import annotations

import contextlib
import warnings
from typing import Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import DEFAULT_MAX_DENSITY, first_samples, is_time_major
from snn_lightning.losses import mean_ce, per_step_ce
from snn_lightning.models import SPIKING_ARCHITECTURES, STAA, Complexity, SpikingArchitecture, measure_complexity
from snn_lightning.modules.base import ClassifierModule
from snn_lightning.neurons import SpikingNeuron
from snn_lightning.neurons.kernels import compact_spikes

__all__ = ["SNNClassifier"]

LOSSES = {"mean_ce": mean_ce, "per_step_ce": per_step_ce}


class SNNClassifier(ClassifierModule):
    """Spiking network classifier (ResNet or plain CNN, ``arch``); prediction = argmax of the logits averaged over time steps."""

    def __init__(
        self,
        arch: SpikingArchitecture = "resnet19",
        num_classes: int = 10,
        in_channels: int = 3,
        time_steps: int = 4,
        eval_time_steps: int | None = None,
        width_multiplier: float = 1.0,
        neuron: SpikingNeuron | STAA | None = None,
        loss: Literal["mean_ce", "per_step_ce"] = "mean_ce",
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        checkpoint_blocks: bool = False,
        compact_spikes: bool = False,
        spike_conv_max_density: float = DEFAULT_MAX_DENSITY,
        warmup_epochs: int = 0,
        exempt_from_weight_decay: bool = False,
        lr_reference_batch: int | None = None,
        compile: bool = False,
    ) -> None:
        """
        Args:
            arch: spiking network: ResNets resnet19/20 (CIFAR, DVS), resnet18/34 (ImageNet), resnet_mini (8×8 digits); plain CNNs for 28×28 and 32×32 images convnet2 (conv 32-64, FC 256), plif_net (PLIF paper: conv 128-128, FC 2048), vgg_small (64-64-128-128-256-256, FC 512); shd_mlp (spiking FC 256-256, no conv: SHD's and SSC's 700 audio channels).
            num_classes: number of classes; the CLI links it from ``data.num_classes``.
            in_channels: input channels; the CLI links it from ``data.in_channels``.
            time_steps: simulation steps T the network is built and trained with.
            eval_time_steps: run only the first k steps outside training (validation, test, predict): images repeated k times, event clips cut to their first k frames; null: time_steps. Not stored in checkpoints (``test --ckpt_path best --model.eval_time_steps 2``).
            width_multiplier: scales every layer's channel count.
            neuron: neuron template for every spiking layer: LIF, PLIF, AdaptiveLIF, or STAA (STAA-SNN's aggregator); null means ``LIF(tau=2.0)``.
            loss: ``mean_ce`` (CE of the time-mean logits) or ``per_step_ce`` (mean of every step's CE, TET).
            label_smoothing: label smoothing of the cross-entropy (0.1 in the paper recipes).
            optimizer: optimizer factory; null means SGD(lr=0.1, momentum=0.9, weight_decay=5e-4).
            lr_scheduler: scheduler factory; null means cosine annealing over ``trainer.max_epochs`` (after ``warmup_epochs``).
            warmup_epochs: epochs of linear learning-rate warm-up before the default cosine schedule (FSTA-SNN: 10 on CIFAR10-DVS, 5 on ImageNet); 0: none.
            exempt_from_weight_decay: no weight decay on BN, biases, per-channel neuron parameters (M, N, PLIF's τ) and STAA's position encodings (FSTA-SNN's recipe).
            lr_reference_batch: the global batch (samples per optimizer step over all processes) the optimizer's lr is set for; the lr is then scaled linearly to this run's (data.batch_size × processes × accumulated batches); null: the lr as given.
            compile: run the network through torch.compile (in place, so checkpoints keep their keys); the first batches take longer while it compiles, and the CPU needs a C++ compiler.
            checkpoint_blocks: in training keep only each residual block's input and recompute the block in backward (less memory, more time).
            compact_spikes: in training keep the spikes that layers save for backward as bool, 1 byte instead of 4 (eager mode only).
            spike_conv_max_density: on the CPU a 3×3 convolution computes from its nonzero inputs when at most this fraction is nonzero (faster at low spike rates); 0 turns that off.
        """
        super().__init__(
            num_classes, optimizer, lr_scheduler, warmup_epochs, exempt_from_weight_decay, lr_reference_batch, compile
        )
        if time_steps < 1:
            raise ConfigurationError(f"model.time_steps must be >= 1, got {time_steps}; set e.g. --model.time_steps 4")
        if eval_time_steps is not None and not 1 <= eval_time_steps <= time_steps:
            raise ConfigurationError(
                f"model.eval_time_steps is {eval_time_steps} but the network runs time_steps={time_steps}; "
                f"evaluate at 1..{time_steps} steps (null: all {time_steps})"
            )
        # Lightning warns about a neuron object given in Python and advises ignoring it, which the next lines do;
        # ignoring "neuron" outright would also drop the config the CLI stores for it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attribute 'neuron' is an instance of `nn.Module`")
            # eval_time_steps is how this process evaluates, not part of the trained model.
            self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "eval_time_steps"])
        if neuron is not None and self.hparams.get("neuron") is neuron:
            # A neuron object given in Python would be pickled into checkpoints, which weights_only loading
            # refuses; pass it again to load_from_checkpoint. The CLI stores its config instead, which is kept.
            del self.hparams["neuron"]
        self.network = SPIKING_ARCHITECTURES[arch](
            num_classes=num_classes,
            in_channels=in_channels,
            time_steps=time_steps,
            width_multiplier=width_multiplier,
            neuron=neuron,
            checkpoint_blocks=checkpoint_blocks,
            spike_conv_max_density=spike_conv_max_density,
        )
        self.eval_time_steps = eval_time_steps
        self.compact_spikes = compact_spikes
        self.loss_fn = LOSSES[loss]
        self.label_smoothing = label_smoothing

    @property
    def time_steps(self) -> int:
        """Number of simulation steps T the network is built and trained with."""
        return self.network.time_steps

    @property
    def active_time_steps(self) -> int:
        """Number of steps the network runs now: ``time_steps`` in training, ``eval_time_steps`` (when set) outside it."""
        return self.time_steps if self.training or self.eval_time_steps is None else self.eval_time_steps

    def network_input(self, inputs: Tensor) -> Tensor:
        """Return the ``[k, B, C, H, W]`` sequence the network runs, k = ``active_time_steps``: images repeated, frames cut.

        Args:
            inputs: static images ``[B, C, H, W]`` or event frames ``[T, B, C, H, W]`` (T from the data).
        """
        steps = self.active_time_steps
        if not is_time_major(inputs):
            return inputs.unsqueeze(0).expand(steps, *inputs.shape) if inputs.ndim == 4 else inputs
        frames = inputs.shape[0]
        if frames == steps:
            return inputs
        if self.training or frames < steps:
            raise ConfigurationError(
                f"the data gives {frames} frames per clip but the model {'trains' if self.training else 'runs'} "
                f"{steps} time steps; make them equal (drop data.frames, whose default is model.time_steps)"
                + ("" if self.training else f", or evaluate at fewer steps with --model.eval_time_steps {frames}")
            )
        return inputs[:steps]  # every layer is causal: the first k steps' outputs do not depend on later frames

    def forward(self, inputs: Tensor) -> Tensor:
        """Return logits ``[k, B, classes]`` (k = ``active_time_steps``) for images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]``."""
        with compact_spikes() if self.compact_spikes and torch.is_grad_enabled() else contextlib.nullcontext():
            return self.network(self.network_input(inputs))

    def complexity(self, inputs: Tensor) -> Complexity:
        """Return the network's parameter count and MACs per sample over ``active_time_steps`` for inputs shaped like ``inputs``."""
        return measure_complexity(self.network, self.network_input(first_samples(inputs, 1)), self.active_time_steps)

    def on_train_batch_start(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """At the first training batch, print the parameter count and MACs (before the first epoch's line) and log them."""
        if self.global_step != 0 or batch_idx != 0:
            return
        complexity = self.complexity(batch[0])
        self.print(f"model complexity: {complexity}")
        for logger in self.loggers:
            logger.log_hyperparams(
                {"model/parameters": complexity.parameters, "model/macs_per_step": complexity.macs_per_step}
            )

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.loss_fn(outputs, targets, self.label_smoothing)

    def class_logits(self, outputs: Tensor) -> Tensor:
        return outputs.mean(0)
