"""Stop training at the first NaN or infinite value, in a batch's inputs, the loss, the weights or a BatchNorm statistic, before a checkpoint holds it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.nn.parameter import is_lazy

from snn_lightning.errors import NonFiniteLossError, NonFiniteValueError

__all__ = ["NaNGuard", "latest_checkpoint"]


class NaNGuard(L.Callback):
    """Stop training at the first NaN or infinite value in a batch's inputs, the loss, a parameter or a BatchNorm statistic.

    Each value is checked before it can spread or be saved:

    - a training batch's inputs when the batch starts, before they reach the model: a NaN membrane
      never spikes, so a NaN image trains on with a finite loss while the weights and BatchNorm
      statistics before the first spiking layer turn NaN;
    - the loss just before the backward pass, so the weights, the optimizer state and every
      checkpoint already written stay as they were after the last good step;
    - the trained parameters and the BatchNorm statistics after each batch (other floating buffers
      for NaN only: a mask may hold ``-inf``), computed on the device after each batch without
      waiting for it, read when the next batch starts and before any checkpoint is written;
    - the ``state_dict`` of every checkpoint before it is written, so no file holds such a value.

    The error names the global step, the epoch and the batch, what is not finite (the ``train/…``
    terms logged in that step, the samples of the batch, or the tensor) and the last checkpoint to
    resume from. Under DDP the ranks agree (an all-reduce of each check's flag), so they all stop together.
    """

    def __init__(self) -> None:
        # Set after each training batch: whether its update left a value non-finite, as a device
        # tensor read when the next batch starts, and where the batch was.
        self._after_batch: tuple[Tensor | bool, str] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._after_batch = None  # left by a fit that stopped mid-batch

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(not finite, all=False):
            raise NonFiniteLossError(_non_finite_message(trainer, loss))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._check_after_batch(trainer, pl_module)
        inputs = dict(_floating_tensors(batch, "batch"))
        screened = bool(_screen(inputs, {})) if inputs else False
        bad = _confirmed(trainer, screened, lambda: _first_non_finite(inputs, {}))
        if bad is not None:
            raise NonFiniteValueError(_non_finite_input_message(trainer, inputs, bad, batch_idx))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        where = f"after training batch {batch_idx} of epoch {trainer.current_epoch} (global step {trainer.global_step})"
        self._after_batch = (_screen(*_guarded_tensors(pl_module)), where)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_after_batch(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._check_after_batch(trainer, pl_module)
        _, nan_free = _guarded_tensors(pl_module)
        saved: tuple[dict[str, Tensor], dict[str, Tensor]] = ({}, {})
        for name, tensor in (checkpoint.get("state_dict") or {}).items():
            if isinstance(tensor, Tensor) and tensor.is_floating_point():
                saved[name in nan_free][name] = tensor  # a name the model lacks (a callback's) must be finite
        bad = _confirmed(trainer, bool(_screen(*saved)), lambda: _first_non_finite(*saved))
        if bad is not None:
            raise NonFiniteValueError(
                f"the checkpoint of global step {trainer.global_step} (epoch {trainer.current_epoch}) was not written: "
                f"{bad or 'a tensor of another DDP rank is not finite'}; {_resume_hint(trainer)}"
            )

    def _check_after_batch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Raise :class:`NonFiniteValueError` naming the batch and the tensor when the last batch left a value non-finite."""
        if self._after_batch is None:
            return
        screened, where = self._after_batch
        self._after_batch = None
        bad = _confirmed(trainer, bool(screened), lambda: _first_non_finite(*_guarded_tensors(pl_module)))
        if bad is not None:
            raise NonFiniteValueError(
                f"non-finite weights: {bad or 'a tensor of another DDP rank is not finite'} {where}, whose loss was "
                f"finite; training stopped before a checkpoint held it; {_resume_hint(trainer)}; lower the learning "
                f"rate (model.init_args.optimizer) or set trainer.gradient_clip_val"
            )


def _confirmed(trainer: L.Trainer, screened: bool, find: Callable[[], str | None]) -> str | None:
    """Return what ``find`` reports non-finite ("" when only another DDP rank found something), or None when all is finite.

    ``screened`` is the fast check of this rank (a norm, which also overflows on huge finite
    values); ``find``, the exact one, runs only when a rank's screen fired. Every rank takes
    part in the same all-reduces, so all of them stop together.
    """
    if not trainer.strategy.reduce_boolean_decision(screened, all=False):
        return None
    found = find() if screened else None
    if not trainer.strategy.reduce_boolean_decision(found is not None, all=False):
        return None
    return found or ""


def _floating_tensors(value: Any, path: str) -> list[tuple[str, Tensor]]:
    """Return ``(path, tensor)`` for every floating tensor in ``value`` (nested tuples, lists and dicts), e.g. ``batch[0]``."""
    if isinstance(value, Tensor):
        return [(path, value.detach())] if value.is_floating_point() else []
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _floating_tensors(item, f"{path}[{key!r}]")]
    if isinstance(value, (tuple, list)):
        return [found for index, item in enumerate(value) for found in _floating_tensors(item, f"{path}[{index}]")]
    return []


def _guarded_tensors(module: torch.nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Return the module's tensors that must be finite (trained parameters, BatchNorm statistics) and the other floating buffers, which must hold no NaN (a mask may hold -inf)."""
    finite = {
        name: parameter.detach()
        for name, parameter in module.named_parameters()
        if parameter.requires_grad and not is_lazy(parameter)
    }
    nan_free = {}
    for prefix, layer in module.named_modules():
        statistics = isinstance(layer, torch.nn.modules.batchnorm._NormBase)
        for name, buffer in layer.named_buffers(recurse=False):
            if buffer.is_floating_point() and not is_lazy(buffer):
                (finite if statistics else nan_free)[f"{prefix}.{name}" if prefix else name] = buffer
    return finite, nan_free


def _screen(finite: dict[str, Tensor], nan_free: dict[str, Tensor]) -> Tensor | bool:
    """Return whether a ``finite`` tensor may hold NaN or ±inf or a ``nan_free`` one NaN, as a 0-d tensor read without a host sync until asked.

    Screens with each tensor's L2 norm (NaN or infinite when the tensor holds such a value), one
    fused kernel per device and dtype whatever the number of tensors; a norm also overflows on
    values above about 1e19, which :func:`_first_non_finite` then clears.
    """
    flags = []
    for tensors, bad in ((finite, lambda norms: ~norms.isfinite()), (nan_free, torch.isnan)):
        groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for tensor in tensors.values():
            if tensor.numel():
                groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
        norms = (torch.stack(torch._foreach_norm(group, 2.0, dtype=torch.float32)) for group in groups.values())
        flags += [bad(group_norms).any() for group_norms in norms]
    if len({flag.device for flag in flags}) > 1:  # tensors on several devices: read each flag now
        return any(bool(flag) for flag in flags)
    return torch.stack(flags).any() if flags else False


def _first_non_finite(finite: dict[str, Tensor], nan_free: dict[str, Tensor]) -> str | None:
    """Return ``"<name> holds <what>"`` for the first ``finite`` tensor holding NaN or ±inf or ``nan_free`` one holding NaN, or None."""
    for tensors, finite_required in ((finite, True), (nan_free, False)):
        for name, tensor in tensors.items():
            kinds = _non_finite_kinds(tensor) if finite_required else ("NaN" if bool(tensor.isnan().any()) else "")
            if kinds:
                return f"{name} holds {kinds}"
    return None


def _non_finite_kinds(tensor: Tensor) -> str:
    """Return ``"NaN"``, ``"infinite values"``, both joined by "and", or "" for a finite tensor."""
    found = (("NaN", bool(tensor.isnan().any())), ("infinite values", bool(tensor.isinf().any())))
    return " and ".join(kind for kind, present in found if present)


def _step_terms(trainer: L.Trainer) -> dict[str, float]:
    """Return the ``train/…`` values logged in the current step (``train/ce_step`` reads as ``train/ce``)."""
    terms = {}
    for name, value in trainer.callback_metrics.items():
        if (
            name.startswith("train/")
            and not name.endswith("_epoch")
            and isinstance(value, Tensor)
            and value.numel() == 1
        ):
            terms[name.removesuffix("_step")] = value.item()
    return terms


def latest_checkpoint(trainer: L.Trainer) -> str | None:
    """Return the path of the newest checkpoint file the trainer's first ModelCheckpoint wrote (``last.ckpt`` or a top-k one), if any.

    A ModelCheckpoint records a path before writing its file, so a path whose file is missing (a
    save refused by :class:`NaNGuard` or cut short) is passed over; a remote path is taken as written.
    """
    for callback in trainer.checkpoint_callbacks:
        last, best = getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")
        paths = [path for path in (last, best, *getattr(callback, "best_k_models", {})) if path]
        if paths and "://" in str(paths[0]):
            return paths[0]
        written = [path for path in paths if Path(path).is_file()]
        if written:
            return max(written, key=lambda path: Path(path).stat().st_mtime_ns)
    return None


def _resume_hint(trainer: L.Trainer) -> str:
    """Return where to resume from: the last checkpoint written (it holds finite values only), if any."""
    saved = latest_checkpoint(trainer)
    return (
        f"resume from the untouched checkpoint with --ckpt_path {saved}" if saved else "no checkpoint was written yet"
    )


def _non_finite_message(trainer: L.Trainer, loss: Tensor) -> str:
    """Return the NaNGuard error: where it happened, which terms are not finite, and where to resume from."""
    terms = _step_terms(trainer)
    bad = [f"{name}={value}" for name, value in sorted(terms.items()) if not np.isfinite(value)]
    good = [f"{name}={value:.4g}" for name, value in sorted(terms.items()) if np.isfinite(value)]
    local = loss.detach().float()
    where = (
        f"at global step {trainer.global_step} (epoch {trainer.current_epoch}, "
        f"batch {trainer.fit_loop.epoch_loop.batch_idx})"
    )
    if bad:
        what = f"non-finite loss: {', '.join(bad)}" + (f" (finite: {', '.join(good)})" if good else "")
    elif bool(torch.isfinite(local).all()):
        what = "the loss of another DDP rank is not finite"
    else:
        what = f"the training loss is {local.flatten()[0].item()} (no term logged as train/… is non-finite)"
    return (
        f"{what} {where}; training stopped before this step changed the weights; {_resume_hint(trainer)}; lower the "
        f"learning rate (model.init_args.optimizer) or set trainer.gradient_clip_val"
    )


def _non_finite_input_message(trainer: L.Trainer, inputs: dict[str, Tensor], bad: str, batch_idx: int) -> str:
    """Return the NaNGuard error for a batch whose inputs hold NaN or ±inf: the tensor, its samples, the batch and the fix."""
    what = "the inputs of another DDP rank's batch are not finite"
    if bad:
        path = bad.split(" holds ")[0]
        tensor = inputs[path]
        # Samples along the first dimension, as a DataLoader stacks them.
        samples = (~tensor.isfinite()).flatten(1).any(1).nonzero().flatten().tolist() if tensor.ndim > 1 else []
        listed = ", ".join(map(str, samples[:5])) + (", …" if len(samples) > 5 else "")
        rows = f" in {len(samples)} of its {len(tensor)} samples ({listed})" if samples else ""
        what = f"non-finite input: {path} {list(tensor.shape)} holds {bad.split(' holds ')[1]}{rows}"
    return (
        f"{what} at global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx}); training "
        f"stopped before this batch reached the model; {_resume_hint(trainer)}; find that sample in the data (e.g. "
        f"a normalisation dividing by a zero standard deviation) and fix or drop it"
    )
