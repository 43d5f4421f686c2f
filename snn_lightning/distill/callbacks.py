"""Knowledge-distillation methods as Lightning callbacks, named under ``model.distillation`` in YAML.

A :class:`~snn_lightning.modules.DistillationModule` takes them as its ``distillation`` argument
and hands them to Lightning (``configure_callbacks``), so a config names its methods without
restating ``trainer.callbacks``; listed under ``trainer.callbacks`` (or given to
``L.Trainer(callbacks=...)``) they work the same. Only that module calls them: in its ``setup``
it hands each one the student's and the teacher's feature channels (:meth:`KDCallback.build`)
and registers the learnable parts returned; in every training step it hands each one a
:class:`DistillationOutputs` (student per-step logits and features, teacher
logits and features, targets, label smoothing) with its parts and sums the named loss terms they
return, logging each as ``train/<name>``. Choose at most one logit method (``ClassicalKD``,
``TSERKD`` or ``WSLDKD``: each declares ``replaces_ce`` and returns its own CE + KD terms instead of
the student's cross-entropy) and any feature method (``FeatureKD``, ``BlurredFeatureKD``) beside
it; with none the student trains on its plain cross-entropy.

    model:
      class_path: snn_lightning.modules.DistillationModule
      init_args:
        distillation:
          - class_path: snn_lightning.distill.TSERKD
            init_args: {alpha: 0.5, tau: 4.0, entropy_weight: 0.01}
          - class_path: snn_lightning.distill.FeatureKD

Each method's docstring names the function of :mod:`snn_lightning.distill.losses` it computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, get_args, runtime_checkable

import lightning as L
from torch import Tensor, nn

from snn_lightning.distill.losses import (
    FeatureReduction,
    blurred_feature_kd_loss,
    classical_kd_terms,
    feature_kd_loss,
    tser_terms,
    wsld_terms,
)
from snn_lightning.errors import ConfigurationError

__all__ = [
    "BlurredFeatureKD",
    "ClassicalKD",
    "DistillationHost",
    "DistillationOutputs",
    "FeatureKD",
    "KDCallback",
    "TSERKD",
    "WSLDKD",
]


@dataclass(frozen=True)
class DistillationOutputs:
    """One training batch as the KD callbacks see it."""

    student_logits: Tensor
    """Student logits of every step ``[T, B, classes]``."""
    student_features: Tensor
    """Student's last-stage spikes ``[T, B, C_s, h, w]``."""
    teacher_logits: Tensor
    """Teacher logits ``[B, classes]`` (computed without gradient)."""
    teacher_features: Tensor
    """Teacher's last-stage feature map ``[B, C_t, h', w']`` (computed without gradient)."""
    targets: Tensor
    """Class labels ``[B]``."""
    label_smoothing: float
    """Label smoothing of the student's cross-entropy, for the CE term of a method that replaces it."""


@runtime_checkable
class DistillationHost(Protocol):
    """The LightningModule side of the KD contract (``DistillationModule``): it builds the callbacks' parts and sums their terms."""

    def loss_terms(self, outputs: DistillationOutputs) -> dict[str, Tensor]:
        """Return the named loss terms of one batch: the KD callbacks' and, unless one replaces it, the student's ``ce``."""


def _check_alpha_tau(callback: str, alpha: float, tau: float) -> None:
    """Raise a ConfigurationError naming ``callback`` when alpha is outside [0, 1] or tau is not positive."""
    if not 0 <= alpha <= 1:
        raise ConfigurationError(f"{callback}.alpha is {alpha}; set it in [0, 1] (the weight of the KD term, e.g. 0.5)")
    _check_tau(callback, tau)


def _check_tau(callback: str, tau: float) -> None:
    """Raise a ConfigurationError naming ``callback`` when the temperature tau is not positive."""
    if tau <= 0:
        raise ConfigurationError(f"{callback}.tau is {tau}; set it > 0 (the softmax temperature, e.g. 4.0)")


def _check_weight(callback: str, weight: float) -> None:
    """Raise a ConfigurationError naming ``callback`` when a loss weight is negative."""
    if weight < 0:
        raise ConfigurationError(f"{callback}.weight is {weight}; set it >= 0 (e.g. 1.0)")


def _check_reduction(callback: str, reduction: str) -> None:
    """Raise a ConfigurationError naming ``callback`` when a feature MSE reduction is neither mean nor sum."""
    if reduction not in get_args(FeatureReduction):
        raise ConfigurationError(
            f"{callback}.reduction is {reduction!r}; set it to 'mean' (over all elements) or 'sum' "
            f"(per sample, averaged over the batch; the KDSNN/BKDSNN form, with weight 7e-5)"
        )


class KDCallback(L.Callback):
    """Base of the KD methods: :meth:`loss_terms` returns the weighted loss terms of one batch by name.

    The distillation module drives every method: it calls :meth:`build` once in its ``setup``
    (before ``configure_optimizers``) and registers the learnable parts returned (adapters,
    generators) as ``distill_modules[name]``, so they are trained by its optimizer and saved in its
    checkpoints; in every training step it calls :meth:`loss_terms` with those parts.
    """

    replaces_ce: ClassVar[bool] = False
    """True for methods whose own ``ce`` term replaces the student's cross-entropy; at most one may be used."""

    @property
    def name(self) -> str:
        """The method's name: the key of its parts in the module's ``distill_modules``."""
        return type(self).__name__

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse, in a fit, a model that does not run the KD callbacks."""
        if stage == "fit" and not isinstance(pl_module, DistillationHost):
            raise ConfigurationError(
                f"trainer.callbacks has {self.name}, which distils a teacher into the student, but the model is "
                f"{type(pl_module).__name__}; set model.class_path: snn_lightning.modules.DistillationModule"
            )

    def build(self, student_channels: int, teacher_channels: int) -> nn.Module | None:
        """Return this method's learnable parts for feature maps of these channel counts (None when it has none).

        Args:
            student_channels: channels of the student's last-stage spikes ``C_s``.
            teacher_channels: channels of the teacher's last-stage feature map ``C_t``.
        """
        return None

    def loss_terms(self, outputs: DistillationOutputs, parts: nn.Module | None) -> dict[str, Tensor]:
        """Return this method's weighted loss terms for one batch, by name (``ce``, ``kd``, ``entropy``, ``feat``).

        Args:
            outputs: the batch's student and teacher outputs, targets and label smoothing.
            parts: the learnable parts :meth:`build` returned, as registered with the module (None when it has none).
        """
        raise NotImplementedError


class ClassicalKD(KDCallback):
    """Classical logit KD (Hinton et al.; the SNN baseline): CE and τ²·KL on the logits averaged over T.

    Computes :func:`snn_lightning.distill.losses.classical_kd_terms`: ``ce = (1−α)·CE(z̄, y)``,
    ``kd = α·τ²·KL(p_T^τ ‖ softmax(z̄/τ))`` with z̄ the time-mean logits.
    """

    replaces_ce = True

    def __init__(self, alpha: float = 0.5, tau: float = 4.0, standardize: bool = False) -> None:
        """
        Args:
            alpha: weight of the KD term; the CE term gets 1 − alpha.
            tau: softmax temperature of teacher and student (results are reported stable for 2 to 6).
            standardize: z-score both logits before the softmax (logit standardization, Sun et al. CVPR 2024; their base tau is 2), so the student matches the teacher's logit relations, not its logit range.
        """
        _check_alpha_tau("ClassicalKD", alpha, tau)
        self.alpha = alpha
        self.tau = tau
        self.standardize = standardize

    def loss_terms(self, outputs: DistillationOutputs, parts: nn.Module | None) -> dict[str, Tensor]:
        return classical_kd_terms(
            outputs.student_logits,
            outputs.teacher_logits,
            outputs.targets,
            self.alpha,
            self.tau,
            outputs.label_smoothing,
            self.standardize,
        )


class TSERKD(KDCallback):
    """TSER (Yu et al., CVPR 2025): CE and KL on every time step's logits, minus an entropy regulariser.

    Computes :func:`snn_lightning.distill.losses.tser_terms`: ``ce = (1−α)·CE_ts``, ``kd = α·KL_ts``,
    ``entropy = −λ·H_ts`` (TSER, arXiv 2503.03144). The teacher's logits are the target of every
    step, so no step leans on the time average.
    """

    replaces_ce = True

    def __init__(
        self, alpha: float = 0.5, tau: float = 4.0, entropy_weight: float = 0.01, standardize: bool = False
    ) -> None:
        """
        Args:
            alpha: weight of the per-step KL term; the per-step CE term gets 1 − alpha.
            tau: softmax temperature of teacher and student (results are reported stable for 2 to 6).
            entropy_weight: λ; the loss subtracts λ times the student's mean step entropy (0 turns it off, a negative value flips its sign).
            standardize: z-score every step's and the teacher's logits before the softmax of KL and entropy (logit standardization, Sun et al. CVPR 2024; their base tau is 2).
        """
        _check_alpha_tau("TSERKD", alpha, tau)
        self.alpha = alpha
        self.tau = tau
        self.entropy_weight = entropy_weight
        self.standardize = standardize

    def loss_terms(self, outputs: DistillationOutputs, parts: nn.Module | None) -> dict[str, Tensor]:
        return tser_terms(
            outputs.student_logits,
            outputs.teacher_logits,
            outputs.targets,
            self.alpha,
            self.tau,
            self.entropy_weight,
            outputs.label_smoothing,
            self.standardize,
        )


class WSLDKD(KDCallback):
    """Weighted soft-label distillation (WSLD, Zhou et al., ICLR 2021; BKDSNN's logit term) on the time-mean logits z̄.

    Computes :func:`snn_lightning.distill.losses.wsld_terms`: ``ce = CE(z̄, y)`` (at full weight, as in
    the WSLD and BKDSNN code) and ``kd = weight·τ²·mean_b w_b·KL(p_T^τ ‖ softmax(z̄_b/τ))`` with
    ``w_b = 1 − exp(−CE(z̄_b, y_b) / CE(t_b, y_b))``: samples the teacher gets more wrong than the student count less
    (:func:`~snn_lightning.distill.losses.weighted_soft_label_kl`). Use it instead of ``ClassicalKD``/``TSERKD``;
    combine with a feature method (BKDSNN: ``BlurredFeatureKD``).
    """

    replaces_ce = True

    def __init__(self, weight: float = 1.0, tau: float = 2.0) -> None:
        """
        Args:
            weight: weight of the WSLD term beside the full cross-entropy (BKDSNN's distill_weight 1.0; the WSLD paper's alpha is 2.5).
            tau: softmax temperature of the soft labels (2 in BKDSNN's and the WSLD authors' code); the sample weights use temperature 1.
        """
        _check_weight("WSLDKD", weight)
        _check_tau("WSLDKD", tau)
        self.weight = weight
        self.tau = tau

    def loss_terms(self, outputs: DistillationOutputs, parts: nn.Module | None) -> dict[str, Tensor]:
        return wsld_terms(
            outputs.student_logits,
            outputs.teacher_logits,
            outputs.targets,
            self.weight,
            self.tau,
            outputs.label_smoothing,
        )


class FeatureKD(KDCallback):
    """KDSNN feature KD (Xu et al., CVPR 2023): ``feat = weight·MSE(adapter(mean_t F_S), F_T)`` on the last stage.

    Computes :func:`snn_lightning.distill.losses.feature_kd_loss` times ``weight``. The adapter is a
    1×1 convolution from the student's to the teacher's channels, trained with the student; the
    student map is area-resized to the teacher's size first. Combine with a logit method.
    """

    def __init__(self, weight: float = 1.0, reduction: FeatureReduction = "mean") -> None:
        """
        Args:
            weight: weight of the feature MSE (KDSNN: 7e-5 with reduction sum, which is 7e-5·C·h·w ≈ 0.57 with reduction mean for 512×4×4 teacher maps).
            reduction: mean: the MSE averaged over batch, channels and positions; sum: summed over a sample's channels and positions, averaged over the batch (KDSNN's form).
        """
        _check_weight("FeatureKD", weight)
        _check_reduction("FeatureKD", reduction)
        self.weight = weight
        self.reduction = reduction

    def build(self, student_channels: int, teacher_channels: int) -> nn.Module:
        return nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def loss_terms(self, outputs: DistillationOutputs, parts: nn.Module | None) -> dict[str, Tensor]:
        loss = feature_kd_loss(outputs.student_features, outputs.teacher_features, parts, self.reduction)
        return {"feat": self.weight * loss}


class BlurredFeatureKD(KDCallback):
    """BKDSNN blurred feature KD (Xu et al., ECCV 2024): regress the teacher map from a channel-masked student map.

    Computes :func:`snn_lightning.distill.losses.blurred_feature_kd_loss` times ``weight``:
    ``feat = weight·MSE(generator(mask(adapter(mean_t F_S))), F_T)``, with a 1×1 conv adapter to the
    teacher's channels, channels zeroed with probability ``mask_ratio``, then conv3×3 – ReLU –
    conv3×3. Adapter and generator are trained with the student. ``use_clip`` rescales the teacher
    map to the student's range first: ``F_T · max(A) / max(F_T)``, A the adapted student map, maxima
    over the batch. Combine with a logit method (BKDSNN: ``WSLDKD``).
    """

    def __init__(
        self,
        weight: float = 1.0,
        mask_ratio: float = 0.15,
        use_clip: bool = False,
        reduction: FeatureReduction = "mean",
    ) -> None:
        """
        Args:
            weight: weight of the feature MSE (BKDSNN: 7e-5 with reduction sum for ResNet features).
            mask_ratio: probability that a channel of a sample is zeroed before the generator (BKDSNN: 0.15).
            use_clip: regress the teacher map rescaled to the adapted student map's maximum, F_T·max(A)/max(F_T) (BKDSNN's --use_clip, off in its released scripts).
            reduction: mean: the MSE averaged over batch, channels and positions; sum: summed over a sample's channels and positions, averaged over the batch (BKDSNN's form).
        """
        _check_weight("BlurredFeatureKD", weight)
        if not 0 <= mask_ratio < 1:
            raise ConfigurationError(f"BlurredFeatureKD.mask_ratio is {mask_ratio}; set it in [0, 1), e.g. 0.15")
        _check_reduction("BlurredFeatureKD", reduction)
        self.weight = weight
        self.mask_ratio = mask_ratio
        self.use_clip = use_clip
        self.reduction = reduction

    def build(self, student_channels: int, teacher_channels: int) -> nn.Module:
        return nn.ModuleDict(
            {
                "adapter": nn.Conv2d(student_channels, teacher_channels, kernel_size=1),
                "generator": nn.Sequential(
                    nn.Conv2d(teacher_channels, teacher_channels, kernel_size=3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(teacher_channels, teacher_channels, kernel_size=3, padding=1),
                ),
            }
        )

    def loss_terms(self, outputs: DistillationOutputs, parts: nn.Module | None) -> dict[str, Tensor]:
        loss = blurred_feature_kd_loss(
            outputs.student_features,
            outputs.teacher_features,
            parts["adapter"],
            parts["generator"],
            self.mask_ratio,
            self.use_clip,
            self.reduction,
        )
        return {"feat": self.weight * loss}
