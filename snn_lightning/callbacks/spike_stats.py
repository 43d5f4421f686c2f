"""Firing rate of every spiking layer, measured on validation and test, and the hook counting it serves.

The firing rate of a layer is the fraction of ones in its output spikes ``[T, B, ...]`` over the
time steps, neurons and samples of a whole validation (or test) epoch. Forward hooks on the
neurons exist only during those epochs: training runs without them. Spiking layers are the
package's neurons and any module type a user names by class path (SpikingJelly's ``LIFNode``).
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Iterable, Mapping

import lightning as L
import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.strategies import Strategy
from torch import Tensor, nn

from snn_lightning.errors import ConfigurationError
from snn_lightning.neurons import SpikingNeuron

__all__ = ["LayerCounts", "SpikeStats", "firing_rates", "log_reduced", "spiking_layers", "spiking_module_types"]

# Returns the counts to add for one call of a hooked module, from its input (pre-hook) or output.
CountFn = Callable[[nn.Module, Tensor], Tensor]


def spiking_module_types(class_paths: list[str] | None = None) -> tuple[type[nn.Module], ...]:
    """Return :class:`SpikingNeuron` and the module classes ``class_paths`` name, imported.

    Args:
        class_paths: import paths of ``nn.Module`` classes whose output is spikes (``spikingjelly.activation_based.neuron.LIFNode``).
    """
    types: list[type[nn.Module]] = [SpikingNeuron]
    for path in class_paths or []:
        try:
            found = pkgutil.resolve_name(path)
        except (ImportError, AttributeError, ValueError) as error:
            raise ConfigurationError(
                f"spiking_modules names {path!r}, which does not import ({error}); give the full class path of an "
                f"installed module class, e.g. spikingjelly.activation_based.neuron.LIFNode"
            ) from error
        if not (isinstance(found, type) and issubclass(found, nn.Module)):
            raise ConfigurationError(
                f"spiking_modules names {path!r}, which is no torch.nn.Module class; name the class of your neuron"
            )
        types.append(found)
    return tuple(types)


def spiking_layers(module: nn.Module, types: tuple[type[nn.Module], ...] = (SpikingNeuron,)) -> dict[str, nn.Module]:
    """Return every spiking layer (instance of ``types``) inside ``module`` by its module path (``network.stem.2``).

    Args:
        module: the network or LightningModule searched.
        types: the spiking module classes, from :func:`spiking_module_types`; the package's neurons by default.
    """
    return {name: layer for name, layer in module.named_modules() if isinstance(layer, types)}


def no_spiking_layer(owner: str, pl_module: nn.Module) -> ConfigurationError:
    """Return the error of callback ``owner`` that found no spiking layer in ``pl_module``."""
    return ConfigurationError(
        f"{owner} found no spiking layer in {type(pl_module).__name__}; name your neuron's class in "
        f"{owner}'s spiking_modules (e.g. [spikingjelly.activation_based.neuron.LIFNode]), or remove {owner} "
        f"from trainer.callbacks for a model without spikes"
    )


class LayerCounts:
    """Integer counts per layer, added up by forward hooks on the device while attached, summed over ranks.

    Every layer starts at zero when attached, so every rank holds the same layers and the sum
    over ranks (one ``all_reduce``) never waits on a layer a rank did not run.
    """

    def __init__(self, width: int, dtype: torch.dtype = torch.int64) -> None:
        """
        Args:
            width: number of counts kept per layer.
            dtype: type of the counts (float64 adds non-integer sums exactly up to 2**53).
        """
        self.width = width
        self.dtype = dtype
        self.counts: dict[str, Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(
        self, layers: dict[str, nn.Module], count: CountFn, device: torch.device, on_input: bool = False
    ) -> None:
        """Zero the counts of ``layers`` and hook them: each call adds ``count(module, output or first input)``."""
        self.detach()
        self.counts = {name: torch.zeros(self.width, dtype=self.dtype, device=device) for name in layers}
        for name, layer in layers.items():
            if on_input:

                def pre_hook(module: nn.Module, args: tuple, name: str = name) -> None:
                    self.counts[name] += count(module, args[0])

                self._handles.append(layer.register_forward_pre_hook(pre_hook))
            else:

                def hook(module: nn.Module, args: tuple, output: Tensor, name: str = name) -> None:
                    self.counts[name] += count(module, output)

                self._handles.append(layer.register_forward_hook(hook))

    def detach(self) -> None:
        """Remove the hooks; the counts stay readable."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reduced(self, strategy: Strategy) -> dict[str, Tensor]:
        """Return the counts summed over all processes (``[width]`` per layer, same order as attached)."""
        if not self.counts:
            return {}
        total = strategy.reduce(torch.stack(list(self.counts.values())), reduce_op="sum")
        return dict(zip(self.counts, total))


def _spike_count(module: nn.Module, spikes: Tensor) -> Tensor:
    """Return ``[ones, elements]`` of one output of a spiking layer."""
    return torch.stack((spikes.count_nonzero(), spikes.new_full((), spikes.numel(), dtype=torch.int64)))


def firing_rates(counts: dict[str, Tensor]) -> dict[str, float]:
    """Return ``ones / elements`` per layer from ``[ones, elements]`` counts (0 for a layer that never ran)."""
    return {name: ones.item() / max(elements.item(), 1) for name, (ones, elements) in counts.items()}


class SpikeStats(L.Callback):
    """Log the firing rate of every spiking layer on validation and test: ``{stage}/firing_rate/<layer>`` and the mean.

    ``<layer>`` is the neuron's module path in the LightningModule (``network.stages.0.0.neuron1``);
    ``{stage}/firing_rate`` is the mean over layers. Forward hooks on every spiking layer
    (:class:`SpikingNeuron` and the ``spiking_modules`` classes) are registered at the start of a
    validation/test epoch and removed at its end, so training runs without them; the counts stay
    on the device and are summed over DDP ranks before logging. The last table is kept in :attr:`table` (for plots) and, with a :class:`WandbLogger`, logged as a
    ``wandb.Table`` under ``{stage}/firing_rate_table``.
    """

    def __init__(self, spiking_modules: list[str] | None = None) -> None:
        """
        Args:
            spiking_modules: class paths of further module types whose output is spikes ``[T, B, ...]`` (e.g. ``[spikingjelly.activation_based.neuron.LIFNode]``); the package's neurons are always included.
        """
        self.spiking_types = spiking_module_types(spiking_modules)
        self.table: dict[str, float] = {}
        self._counts = LayerCounts(width=2)

    def _start(self, pl_module: L.LightningModule) -> None:
        layers = spiking_layers(pl_module, self.spiking_types)
        if not layers:
            raise no_spiking_layer("SpikeStats", pl_module)
        self._counts.attach(layers, _spike_count, pl_module.device)

    def _end(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._counts.detach()
        self.table = firing_rates(self._counts.reduced(trainer.strategy))
        metrics = {f"{stage}/firing_rate/{name}": rate for name, rate in self.table.items()}
        log_reduced(pl_module, {**metrics, f"{stage}/firing_rate": sum(self.table.values()) / len(self.table)})
        if not trainer.sanity_checking:
            _log_table(trainer.loggers, f"{stage}/firing_rate_table", ["layer", "firing_rate"], self.table.items())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, pl_module, "test")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._counts.detach()


def log_reduced(pl_module: L.LightningModule, metrics: Mapping[str, float | Tensor]) -> None:
    """Log epoch values that are already reduced over DDP ranks, so every rank holds the same value.

    ``sync_dist`` then averages equal values (a no-op) and tells Lightning the values are synced.
    """
    pl_module.log_dict(dict(metrics), sync_dist=True)


def _log_table(loggers: Iterable[Logger], key: str, columns: list[str], rows: Iterable) -> None:
    """Log ``rows`` as a ``wandb.Table`` under ``key`` to every :class:`WandbLogger` among ``loggers``."""
    data = [list(row) for row in rows]
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=data)
