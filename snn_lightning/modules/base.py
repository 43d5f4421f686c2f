"""Shared training logic of the classifiers: loss hook, accuracy metrics, optimizer and schedule."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from snn_lightning.errors import ConfigurationError
from snn_lightning.modules.schedule import WarmupCosine, start_schedule

__all__ = ["ClassifierModule", "scale_lr_to_global_batch", "weight_decay_groups"]

STAGES = ("train", "val", "test")


class ClassifierModule(L.LightningModule):
    """Base LightningModule: subclasses define ``forward``, ``loss`` and ``class_logits``.

    Logs ``{stage}/loss``, ``{stage}/acc`` (top-1) and ``{stage}/acc_top5`` (when there are more
    than 5 classes) for the train, val and test stages, accumulated with torchmetrics. Targets
    are class indices ``[B]`` or class probabilities ``[B, classes]`` (mixup/CutMix); the accuracy
    of soft targets is measured against their most probable class.
    """

    def __init__(
        self,
        num_classes: int,
        optimizer: OptimizerCallable | None,
        lr_scheduler: LRSchedulerCallable | None,
        warmup_epochs: int = 0,
        exempt_from_weight_decay: bool = False,
        lr_reference_batch: int | None = None,
        compile_network: bool = False,
    ) -> None:
        super().__init__()
        if warmup_epochs < 0:
            raise ConfigurationError(f"model.warmup_epochs must be >= 0, got {warmup_epochs}; set e.g. 5 (or 0: none)")
        if lr_reference_batch is not None and lr_reference_batch < 1:
            raise ConfigurationError(
                f"model.lr_reference_batch must be a positive batch size, got {lr_reference_batch}; set the global "
                f"batch the optimizer's lr is tuned for (e.g. 128), or null to use the lr as given"
            )
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.warmup_epochs = warmup_epochs
        self.exempt_from_weight_decay = exempt_from_weight_decay
        self.lr_reference_batch = lr_reference_batch
        self.compile_network = compile_network
        self._lr: float | None = None
        # Keys are "<stage>_<k>": a bare "train" would clash with nn.Module.train.
        self.top_ks = (1, 5) if num_classes > 5 else (1,)
        # The evaluation loss as a torchmetric: it sums losses and sample counts over DDP ranks in
        # floats, where Lightning's sync_dist mean divides the summed batch sizes as integers (off
        # when the ranks' shards differ by a sample, as evaluation shards do).
        self.evaluation_loss = torch.nn.ModuleDict(
            {stage: MeanMetric(nan_strategy="disable") for stage in ("val", "test")}
        )
        self.accuracy = torch.nn.ModuleDict(
            {
                f"{stage}_{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
                for stage in STAGES
                for k in self.top_ks
            }
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> ClassifierModule:
        """Return a deep copy that shares the optimizer and schedule factories (``EMAWeightAveraging`` makes one).

        A factory the CLI builds holds jsonargparse's instantiation context, and through it the CLI,
        its trainer and data, and under DDP rank 0's handles on the other ranks' processes, which
        cannot be copied (``cannot pickle '_thread.lock'``). A factory only builds an optimizer on
        call, so the copy can use the same one.
        """
        for factory in (self.optimizer_factory, self.lr_scheduler_factory):
            memo.setdefault(id(factory), factory)
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self.__getstate__(), memo))  # what copy.deepcopy does by default
        return copied

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Return the training loss of the network outputs for the targets."""
        raise NotImplementedError

    def class_logits(self, outputs: Tensor) -> Tensor:
        """Return the ``[B, classes]`` logits a prediction is made from."""
        raise NotImplementedError

    def log_loss_and_accuracy(self, stage: str, loss: Tensor, logits: Tensor, targets: Tensor) -> None:
        """Log ``{stage}/loss`` (per step in training, per epoch always) and the top-k accuracies of the ``[B, classes]`` logits."""
        # Under DDP the epoch loss is the mean over every rank's samples, not rank 0's shard.
        if stage == "train":  # every rank trains on as many samples, so sync_dist's mean is exact
            self.log(
                "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(targets), sync_dist=True
            )
        else:
            mean_loss = self.evaluation_loss[stage]
            # One entry per sample weighs the batch mean by its size (nan_strategy "disable", which
            # keeps a NaN loss visible, makes torchmetrics 1.9 ignore the weight argument).
            mean_loss.update(loss.detach().expand(len(targets)))
            self.log(f"{stage}/loss", mean_loss, on_epoch=True, prog_bar=True)
        labels = targets.argmax(-1) if targets.ndim == 2 else targets
        for k in self.top_ks:
            metric = self.accuracy[f"{stage}_{k}"]
            metric(logits, labels)
            name = f"{stage}/acc" if k == 1 else f"{stage}/acc_top{k}"
            self.log(name, metric, on_step=False, on_epoch=True, prog_bar=k == 1)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> dict[str, Tensor]:
        images, targets = batch
        outputs = self(images)
        loss = self.loss(outputs, targets)
        self.log_loss_and_accuracy(stage, loss, self.class_logits(outputs).detach(), targets)
        # Callbacks receive this dict as `outputs` (per-step logits for PerStepAccuracy).
        return {"loss": loss, "outputs": outputs.detach()}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")["loss"]

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> dict[str, Tensor]:
        """Return the predicted class and class probabilities of each sample, and its label when the batch has one."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        probabilities = self.class_logits(self(images)).softmax(-1)
        predicted = {"prediction": probabilities.argmax(-1), "probabilities": probabilities}
        if isinstance(batch, (tuple, list)) and len(batch) > 1:
            predicted["target"] = batch[1]
        return predicted

    def _build_optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        """Return the configured optimizer over ``parameters`` (SGD lr 0.1, momentum 0.9, weight decay 5e-4 unless configured)."""
        if self.optimizer_factory is None:
            return torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)
        try:
            return self.optimizer_factory(parameters)
        except ValueError as error:
            # torch's optimizers refuse out-of-range settings with "Invalid learning rate: -0.1" and the like.
            if not str(error).startswith("Invalid "):
                raise
            raise ConfigurationError(
                f"a setting of model.optimizer is out of range ({error}); fix it in model.optimizer.init_args, "
                f"e.g. lr >= 0 (0.1 for SGD), weight_decay >= 0"
            ) from error

    @property
    def lr(self) -> float:
        """The learning rate training starts from: the optimizer's, or the one set here (e.g. by Lightning's LR finder)."""
        if self._lr is not None:
            return self._lr
        return float(self._build_optimizer([torch.nn.Parameter(torch.zeros(1))]).defaults["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = float(value)

    def configure_model(self) -> None:
        """Compile ``self.network`` with ``torch.compile`` when ``compile`` is set, in place: state-dict keys stay the same."""
        if self.compile_network:
            self.network.compile()

    def on_train_start(self) -> None:
        """Fit the default schedule to this fit's optimizer steps, which the trainer counts once the train loader is built."""
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(getattr(config.scheduler, "lr_lambdas", [None])[0], WarmupCosine):
                config.interval = start_schedule(config.scheduler, self.trainer.estimated_stepping_batches)

    def configure_optimizers(self):
        """The configured optimizer and schedule; unless a scheduler is configured, cosine to 0 over ``max_epochs``, after any warm-up.

        The default schedule moves at every optimizer step: over a short run stepped per epoch it
        would train half of a 2-epoch run at the full rate and never go below half of it.

        ``ReduceLROnPlateau`` watches ``val/loss`` with ``mode: min`` and ``val/acc`` with ``mode: max``.
        With ``lr_reference_batch`` the optimizer's lr is scaled linearly to this run's global batch;
        an lr set on the module (Lightning's LR finder) is already this run's and is not scaled.
        """
        parameters = weight_decay_groups(self) if self.exempt_from_weight_decay else self.parameters()
        optimizer = self._build_optimizer(parameters)
        if self._lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = self._lr
        elif self.lr_reference_batch is not None:
            scale_lr_to_global_batch(optimizer, self.lr_reference_batch, self.trainer)
        if self.lr_scheduler_factory is not None:
            if self.warmup_epochs:
                raise ConfigurationError(
                    "model.warmup_epochs applies to the default cosine schedule only; remove model.lr_scheduler, "
                    "or set model.warmup_epochs 0 and put the warm-up in your scheduler"
                )
            scheduler = self.lr_scheduler_factory(optimizer)
        elif (max_epochs := self.trainer.max_epochs) and max_epochs > 0:
            if self.warmup_epochs >= max_epochs:
                raise ConfigurationError(
                    f"model.warmup_epochs ({self.warmup_epochs}) must be below trainer.max_epochs ({max_epochs})"
                )
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(self.warmup_epochs, max_epochs))
        else:
            return optimizer
        # The default schedule's interval becomes "step" when training starts (on_train_start).
        schedule = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule["monitor"] = "val/acc" if scheduler.mode == "max" else "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def scale_lr_to_global_batch(optimizer: torch.optim.Optimizer, reference_batch: int, trainer: L.Trainer) -> None:
    """Multiply every group's lr by ``global batch / reference_batch`` (the linear scaling rule) and say so once.

    The global batch is the samples of one optimizer step over all processes: the data module's
    ``batch_size`` × processes (``trainer.world_size``) × ``accumulate_grad_batches``.
    """
    batch_size = getattr(trainer.datamodule, "batch_size", None)
    if not isinstance(batch_size, int):
        raise ConfigurationError(
            "model.lr_reference_batch scales the lr to the global batch, which needs a data module with an integer "
            "batch_size (the package's data modules have one); set it on yours, or set model.lr_reference_batch null"
        )
    global_batch = batch_size * trainer.world_size * trainer.accumulate_grad_batches
    factor = global_batch / reference_batch
    for group in optimizer.param_groups:
        group["lr"] *= factor
    rank_zero_info(
        f"learning rate {optimizer.param_groups[0]['lr']:.6g}: the config's lr for a global batch of {reference_batch} (model.lr_reference_batch) "
        f"scaled x{factor:.6g} to this run's {global_batch} ({batch_size} per process x {trainer.world_size} "
        f"processes x {trainer.accumulate_grad_batches} accumulated)"
    )


def weight_decay_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Return ``module``'s parameters as two optimizer groups: decayed weights, and the rest with ``weight_decay`` 0.

    Exempt, as in FSTA-SNN's recipe: every parameter with at most one dimension (BN scales and
    shifts, biases, the adaptive LIF's per-channel M and N, PLIF's τ) and those a submodule names
    in its ``no_weight_decay()`` (as timm's models do; STAA's position encodings).
    """
    named = {
        f"{prefix}.{name}" if prefix else name
        for prefix, layer in module.named_modules()
        if hasattr(layer, "no_weight_decay")
        for name in layer.no_weight_decay()
    }
    decayed, exempt = [], []
    for name, parameter in module.named_parameters():
        (exempt if parameter.ndim <= 1 or name in named else decayed).append(parameter)
    return [{"params": decayed}, {"params": exempt, "weight_decay": 0.0}]
