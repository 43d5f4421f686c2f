"""LightningModule that distils a frozen ANN teacher into a spiking student with the KD callbacks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning.pytorch import Callback
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from snn_lightning.distill.callbacks import DistillationOutputs, KDCallback
from snn_lightning.distill.teacher import build_teacher, load_teacher
from snn_lightning.errors import ConfigurationError
from snn_lightning.models import ANNArchitecture, ANNResNet
from snn_lightning.modules.snn_classifier import SNNClassifier

__all__ = ["DistillationModule"]

_TEACHER = "teacher."
_DISTILL = "distill_modules."


class DistillationModule(SNNClassifier):
    """Spiking student trained from a frozen ANN teacher by its KD methods, Lightning callbacks it hands to the trainer.

    The student is an :class:`SNNClassifier` (same arguments, same validation and test). The KD
    methods are the ``distillation`` argument, which the module returns from
    ``configure_callbacks``, so a config names them under the model and keeps the trainer's
    callbacks of its base; KD callbacks in ``trainer.callbacks`` join them. In every training step
    the teacher runs once, without gradient, on the static image the student repeats over T; each
    KD callback (``snn_lightning.distill``: ``TSERKD``, ``ClassicalKD``, ``WSLDKD``, ``FeatureKD``,
    ``BlurredFeatureKD``) returns named loss terms, logged as ``train/<name>`` and summed into
    ``train/loss``, with the student's cross-entropy as ``ce`` unless a callback ``replaces_ce``.
    Without KD callbacks the student trains on its plain cross-entropy. The module drives the
    callbacks, never the reverse: in ``setup`` it builds each one's learnable parts from the feature
    channels and registers them as ``distill_modules.<callback name>`` (trained and checkpointed
    with the student); in every step it hands each one the batch's :class:`DistillationOutputs`.

    The teacher is read from ``teacher_checkpoint`` when a fit sets up, not at instantiation, so
    configs print and instantiate without the file, and validate/test/predict never need it. It
    is kept outside the module tree: never in ``parameters()``, the optimizer, ``train()`` mode
    switches, DDP or the student's checkpoint (unless ``save_teacher_in_checkpoint``). Its
    validation accuracy is logged once per fit, at the first validation (after the sanity check,
    which evaluates it on a few batches only), as ``val/teacher_acc``.
    """

    def __init__(
        self,
        teacher_checkpoint: str,
        distillation: list[KDCallback] | None = None,
        teacher_arch: ANNArchitecture = "resnet34",
        teacher_stem: Literal["cifar", "imagenet"] = "cifar",
        teacher_width_multiplier: float = 1.0,
        save_teacher_in_checkpoint: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            teacher_checkpoint: the teacher's weights: a Lightning checkpoint of ``ANNClassifier`` (e.g. ``…/checkpoints/best.ckpt``) or a ``torch.save``d state_dict of an ANN ResNet.
            distillation: the KD methods, Lightning callbacks from ``snn_lightning.distill`` (one logit method: TSERKD, ClassicalKD or WSLDKD; feature methods FeatureKD, BlurredFeatureKD beside it); null: the student's plain cross-entropy.
            teacher_arch: the teacher's architecture (``snn_lightning.models.ANN_ARCHITECTURES``); must match the checkpoint.
            teacher_stem: the teacher's stem, ``cifar`` (3×3 conv1) or ``imagenet`` (7×7 conv1 + max-pool); must match the checkpoint.
            teacher_width_multiplier: the teacher's ``width_multiplier`` (its ``ANNClassifier`` argument); must match the checkpoint.
            save_teacher_in_checkpoint: also store the teacher's weights in the student's checkpoints (as ``teacher.*``), making them self-contained.
            **kwargs: the student's arguments, those of ``SNNClassifier`` (arch, time_steps, neuron, loss, optimizer, …).
        """
        super().__init__(**kwargs)
        if distillation is not None and self.hparams.get("distillation") is distillation:
            # Callback objects given in Python would be pickled into checkpoints, which weights_only loading
            # refuses; the CLI stores their config instead, which is kept (as SNNClassifier does for neuron).
            del self.hparams["distillation"]
        self.distillation = list(distillation or [])
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_arch = teacher_arch
        self.teacher_stem = teacher_stem
        self.teacher_width_multiplier = teacher_width_multiplier
        self.save_teacher_in_checkpoint = save_teacher_in_checkpoint
        self.distill_modules = nn.ModuleDict()
        self.teacher_accuracy = MulticlassAccuracy(self.num_classes, average="micro")
        self._teacher: ANNResNet | None = None
        self._kd_callbacks: list[KDCallback] = []
        self._teacher_accuracy_pending = False

    @property
    def teacher(self) -> ANNResNet:
        """The frozen ANN teacher (eval mode, no gradient), read from ``teacher_checkpoint`` at first use."""
        return self.read_teacher()

    def read_teacher(self) -> ANNResNet:
        """Return the teacher, reading ``teacher_checkpoint`` unless it was read (or taken from a checkpoint's ``teacher.*``) before."""
        if self._teacher is None:
            self._set_teacher(
                load_teacher(
                    self.teacher_checkpoint,
                    self.teacher_arch,
                    self.num_classes,
                    self.hparams.in_channels,
                    self.teacher_stem,
                    self.teacher_width_multiplier,
                )
            )
        return self._teacher

    def _set_teacher(self, teacher: ANNResNet) -> None:
        # Bypass nn.Module.__setattr__, which would register the teacher as a submodule.
        self.__dict__["_teacher"] = teacher

    def configure_callbacks(self) -> list[KDCallback]:
        """Return the KD methods of ``distillation``; Lightning adds them to the trainer's callbacks before ``setup``."""
        return self.distillation

    def setup(self, stage: str) -> None:
        """Collect the KD callbacks (``distillation`` and any in ``trainer.callbacks``), rejecting duplicates or two logit methods; in a fit read the teacher and build their parts."""
        self._kd_callbacks = _collect_kd_callbacks(self.trainer.callbacks)
        self._teacher_accuracy_pending = stage == "fit"
        if stage != "fit":
            return
        teacher = self.read_teacher()  # now, so a bad teacher fails before any training
        channels = self.network.feature_channels, teacher.fc.in_features
        for callback in self._kd_callbacks:
            if callback.name in self.distill_modules:  # built before (a second fit of the same module)
                continue
            parts = callback.build(*channels)
            if parts is not None:
                self.distill_modules[callback.name] = parts

    @torch.no_grad()
    def teacher_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Return the teacher's last-stage features ``[B, C_t, h, w]`` and logits ``[B, classes]`` for images ``[B, C, H, W]``."""
        if images.ndim != 4:
            raise ConfigurationError(
                f"DistillationModule needs static images [B, C, H, W] (the ANN teacher sees one image), got a batch "
                f"of shape {tuple(images.shape)}; use a static image data module"
            )
        teacher = self.teacher
        weight = teacher.fc.weight
        if weight.device != images.device or weight.dtype != images.dtype:
            teacher.to(device=images.device, dtype=images.dtype)
        features = teacher.forward_features(images)
        return features, teacher.forward_head(features)

    def loss_terms(self, outputs: DistillationOutputs) -> dict[str, Tensor]:
        """Return the KD callbacks' named terms (equal names add up), with the student's own ``ce`` unless a callback replaces it."""
        terms: dict[str, Tensor] = {}
        for callback in self._kd_callbacks:
            parts = self.distill_modules[callback.name] if callback.name in self.distill_modules else None
            callback_terms = callback.loss_terms(outputs, parts)
            if "ce" in callback_terms and not callback.replaces_ce:
                raise ConfigurationError(
                    f"{callback.name}.loss_terms returned a 'ce' term, but {callback.name}.replaces_ce is False, so the "
                    f"student's cross-entropy would count twice; set replaces_ce = True on {callback.name} if its CE "
                    f"replaces the student's, or give the term another name"
                )
            for name, value in callback_terms.items():
                terms[name] = terms[name] + value if name in terms else value
        if not any(callback.replaces_ce for callback in self._kd_callbacks):
            terms = {"ce": self.loss(outputs.student_logits, outputs.targets), **terms}
        return terms

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Return the sum of the KD terms of one batch, logging each term, the loss and the accuracy."""
        if not self._kd_callbacks:
            return super().training_step(batch, batch_idx)
        images, targets = batch
        student_features = self.network.forward_features(self.network_input(images))
        student_logits = self.network.forward_head(student_features)
        teacher_features, teacher_logits = self.teacher_outputs(images)
        outputs = DistillationOutputs(
            student_logits, student_features, teacher_logits, teacher_features, targets, self.label_smoothing
        )
        terms = self.loss_terms(outputs)
        for name, value in terms.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=len(targets), sync_dist=True)
        loss = torch.stack(list(terms.values())).sum()
        self.log_loss_and_accuracy("train", loss, self.class_logits(student_logits).detach(), targets)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Validate the student; during a fit's first validation also the teacher (``val/teacher_acc``)."""
        if self._teacher_accuracy_pending:
            images, targets = batch
            self.teacher_accuracy(self.teacher_outputs(images)[1], targets)
            self.log("val/teacher_acc", self.teacher_accuracy, on_step=False, on_epoch=True)
        return super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        """Stop evaluating the teacher after the first validation that is not the sanity check."""
        if not self.trainer.sanity_checking:
            self._teacher_accuracy_pending = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the teacher's weights as ``teacher.*`` when ``save_teacher_in_checkpoint``; else the file keeps the student only."""
        if self.save_teacher_in_checkpoint:
            checkpoint["state_dict"].update({_TEACHER + key: value for key, value in self.teacher.state_dict().items()})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the teacher from ``teacher.*`` keys if saved, and fit the KD modules' keys to the methods in use.

        KD modules of methods not in use are dropped (evaluating a student needs none) and those of
        methods the checkpoint lacks keep their fresh weights, so the student loads strictly.
        """
        state = checkpoint["state_dict"]
        teacher_state = {key.removeprefix(_TEACHER): state.pop(key) for key in list(state) if key.startswith(_TEACHER)}
        if teacher_state:
            self._set_teacher(
                build_teacher(
                    teacher_state,
                    self.teacher_arch,
                    self.num_classes,
                    self.hparams.in_channels,
                    self.teacher_stem,
                    "(the teacher.* weights in the student's checkpoint)",
                    self.teacher_width_multiplier,
                )
            )
        current = self.distill_modules.state_dict(prefix=_DISTILL)
        for key in [key for key in state if key.startswith(_DISTILL) and key not in current]:
            del state[key]
        for key, value in current.items():
            state.setdefault(key, value)


def _collect_kd_callbacks(callbacks: Iterable[Callback]) -> list[KDCallback]:
    """Return the KD callbacks among the trainer's ``callbacks`` (the module's own included); raise a ConfigurationError for duplicates or two logit methods."""
    kd_callbacks = [callback for callback in callbacks if isinstance(callback, KDCallback)]
    names = [callback.name for callback in kd_callbacks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigurationError(
            f"model.distillation (with trainer.callbacks) lists {', '.join(duplicates)} more than once; "
            f"list each KD method once"
        )
    logit_methods = [callback.name for callback in kd_callbacks if callback.replaces_ce]
    if len(logit_methods) > 1:
        raise ConfigurationError(
            f"model.distillation (with trainer.callbacks) lists two logit-KD methods ({' and '.join(logit_methods)}); "
            f"each replaces the cross-entropy with its own CE + KD terms, so keep one (feature methods may be added "
            f"beside it)"
        )
    return kd_callbacks
