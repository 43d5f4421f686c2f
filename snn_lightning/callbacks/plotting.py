"""Save the plots of :mod:`snn_lightning.plots` as PNG files during validation and test, and log them to wandb and TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure
from torch import Tensor, nn

from snn_lightning import plots
from snn_lightning.callbacks.per_step_accuracy import PerStepAccuracy
from snn_lightning.callbacks.spike_stats import SpikeStats, no_spiking_layer, spiking_layers, spiking_module_types
from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import first_samples, is_time_major
from snn_lightning.models.complexity import probing
from snn_lightning.neurons import SpikingNeuron

__all__ = ["PlotCallback", "record_layer"]


@torch.no_grad()
def record_layer(
    model: nn.Module, inputs: Tensor, layer: str, spiking_types: tuple[type[nn.Module], ...] = (SpikingNeuron,)
) -> tuple[Tensor, Tensor]:
    """Return the input currents and output spikes ``[T, B, ...]`` of the module named ``layer`` for ``inputs``.

    Runs ``model(inputs)`` once in evaluation mode without gradients; the modules' training
    flags are restored afterwards.

    Args:
        model: the network or LightningModule; ``layer`` is a name from its ``named_modules()``.
        inputs: a batch as the model takes it (images ``[B, C, H, W]`` or frames ``[T, B, C, H, W]``).
        layer: module path of the layer (``network.stem.2``).
        spiking_types: the spiking module classes whose layers a missing ``layer`` error lists (:func:`spiking_module_types`).
    """
    module = dict(model.named_modules()).get(layer)
    if module is None:
        names = list(spiking_layers(model, spiking_types))
        raise ConfigurationError(
            f"no module named {layer!r} in {type(model).__name__}; spiking layers are {names[:8]}"
            f"{' …' if len(names) > 8 else ''}"
        )
    captured: dict[str, Tensor] = {}
    handles = [
        module.register_forward_pre_hook(lambda _, args: captured.setdefault("currents", args[0])),
        module.register_forward_hook(lambda _, args, output: captured.setdefault("spikes", output)),
    ]
    with probing(model, handles):
        model(inputs)
    return captured["currents"], captured["spikes"]


class PlotCallback(L.Callback):
    """Save the SNN's plots as PNG under ``<log_dir>/plots/`` at the end of validation and test; log them to wandb and TensorBoard.

    On a few samples of the first batch: a spike raster and (for the package's LIF, PLIF and IF)
    the membrane traces of one spiking layer, and for event data ``[T, B, P, H, W]`` the input
    frames. With :class:`SpikeStats` and :class:`PerStepAccuracy` in ``trainer.callbacks`` also the
    firing rate per layer and the accuracy vs time steps. Files are named ``val_epoch{E}_<plot>.png`` and ``test_<plot>.png``
    in the logger's folder (``trainer.log_dir``, else ``default_root_dir``); a
    :class:`WandbLogger` gets them as images and a :class:`TensorBoardLogger` as figures, under
    ``{stage}/plots/<plot>``. Runs on rank zero only.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 2,
        num_neurons: int = 32,
        layer: str | None = None,
        spiking_modules: list[str] | None = None,
    ) -> None:
        """
        Args:
            every_n_epochs: plot at the end of every n-th validation epoch of fit (and always at the last epoch, validate and test).
            num_samples: samples of the first batch shown in the raster and (one of them) the event frames.
            num_neurons: neurons shown in the raster (those that fire most).
            layer: module path of the spiking layer shown (e.g. ``network.stem.2``); null takes the first layer whose neuron is LIF, PLIF or IF, else the first spiking layer.
            spiking_modules: class paths of further module types whose output is spikes ``[T, B, ...]`` (e.g. ``[spikingjelly.activation_based.neuron.LIFNode]``), shown in the raster; the package's neurons are always included.
        """
        if every_n_epochs < 1 or num_samples < 1 or num_neurons < 1:
            raise ConfigurationError(
                f"PlotCallback needs every_n_epochs, num_samples and num_neurons >= 1, got {every_n_epochs}, "
                f"{num_samples}, {num_neurons}"
            )
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.num_neurons = num_neurons
        self.layer = layer
        self.spiking_types = spiking_module_types(spiking_modules)
        self.saved: list[Path] = []
        self._inputs: Tensor | None = None
        self._warned = False

    def _due(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn != TrainerFn.FITTING:
            return True
        epoch = trainer.current_epoch + 1
        return epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs

    def _keep(self, trainer: L.Trainer, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and trainer.is_global_zero and self._due(trainer):
            self._inputs = first_samples(batch[0], self.num_samples).clone()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._keep(trainer, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._keep(trainer, batch, batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._plot(trainer, pl_module, "val", f"val_epoch{trainer.current_epoch:03d}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._plot(trainer, pl_module, "test", "test")

    def _layer_name(self, pl_module: L.LightningModule) -> str:
        """Return the layer to show: the configured one, else the first whose membrane can be re-run."""
        if self.layer is not None:
            return self.layer
        layers = spiking_layers(pl_module, self.spiking_types)
        if not layers:
            raise no_spiking_layer("PlotCallback", pl_module)
        plain = [name for name, neuron in layers.items() if type(neuron).forward is SpikingNeuron.forward]
        return plain[0] if plain else next(iter(layers))

    def figures(self, pl_module: L.LightningModule, inputs: Tensor, callbacks: list[L.Callback]) -> dict[str, Figure]:
        """Return the plots for ``inputs`` (a few samples of a batch), by name."""
        layer = self._layer_name(pl_module)
        currents, spikes = record_layer(pl_module, inputs, layer, self.spiking_types)
        figures = {"raster": plots.spike_raster(spikes, self.num_samples, self.num_neurons, layer)}
        neuron = dict(pl_module.named_modules())[layer]
        if type(neuron).forward is SpikingNeuron.forward:
            figures["membrane"] = plots.membrane_traces(neuron, currents, layer=layer)
        elif not self._warned:
            rank_zero_warn(
                f"PlotCallback skips the membrane plot: {layer} is of type {type(neuron).__name__}, and only the "
                f"package's LIF, PLIF and IF equations can be re-run; set layer to a LIF, PLIF or IF layer to see it"
            )
            self._warned = True
        for callback in callbacks:
            if isinstance(callback, SpikeStats) and callback.table:
                figures["firing_rates"] = plots.firing_rate_bars(callback.table)
            if isinstance(callback, PerStepAccuracy) and callback.accuracies:
                figures["accuracy_vs_t"] = plots.accuracy_vs_time_steps(callback.accuracies)
        if is_time_major(inputs):
            figures["events"] = plots.event_frames(inputs[:, 0])
        return figures

    def _plot(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, prefix: str) -> None:
        # log_dir is a collective under DDP: every rank asks, rank zero plots.
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "plots"
        inputs, self._inputs = self._inputs, None
        if inputs is None or not trainer.is_global_zero:
            return
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in self.figures(pl_module, inputs, trainer.callbacks).items():
            path = folder / f"{prefix}_{name}.png"
            figure.savefig(path, dpi=100)
            self.saved.append(path)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=f"{stage}/plots/{name}", images=[str(path)], step=trainer.global_step)
                elif isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(f"{stage}/plots/{name}", figure, trainer.global_step, close=False)
