"""Distillation losses on time-major student logits, as pure functions.

``student_logits`` are ``[T, B, classes]``, ``teacher_logits`` ``[B, classes]``, ``targets`` ``[B]``
(``t`` is always a time step); every loss returns a float32 scalar. Half-precision inputs (bf16,
fp16) are computed in float32, and the teacher's tensors are targets: no gradient flows into them.
Formulas: TSER (Yu et al., CVPR 2025, arXiv 2503.03144). The CE terms are the classifier's own
cross-entropies (:mod:`snn_lightning.losses`).

The ``*_terms`` functions return the weighted terms of a combined loss by name (``ce``, ``kd``,
``entropy``), so a training loop can log each one; the loss is their sum.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn_lightning.losses import as_float32, mean_ce, per_step_ce

__all__ = [
    "FeatureReduction",
    "blurred_feature_kd_loss",
    "classical_kd_terms",
    "feature_kd_loss",
    "per_step_entropy",
    "per_step_kl",
    "standardize_logits",
    "tser_terms",
    "weighted_soft_label_kl",
    "wsld_terms",
]

FeatureReduction = Literal["mean", "sum"]
"""How a feature MSE reduces: ``mean`` over all elements, or ``sum`` over a sample's elements, mean over the batch."""


def standardize_logits(logits: Tensor) -> Tensor:
    """Return ``(z − mean_c z) / std_c z`` of the logits z over the class axis (Sun et al., CVPR 2024, "logit standardization").

    KL at a shared temperature is minimised only when the student's logits equal the teacher's up
    to a constant, so a student must first grow its logits to the teacher's range; after the
    z-score only their relations are matched. A spiking student's logits are an FC layer of firing
    rates, small at initialisation, so this matters for SNNs.
    """
    logits = as_float32(logits)
    return (logits - logits.mean(-1, keepdim=True)) / (logits.std(-1, keepdim=True) + 1e-7)


def _tempered(logits: Tensor, tau: float, standardize: bool) -> Tensor:
    """Return ``logits / tau`` in float32, after :func:`standardize_logits` when ``standardize``."""
    return (standardize_logits(logits) if standardize else as_float32(logits)) / tau


def _kl_by_step_and_sample(student_logits: Tensor, teacher_logits: Tensor, tau: float, standardize: bool) -> Tensor:
    """Return ``KL(p_T^tau ‖ p_S^tau(t))`` unreduced, one value per step and sample ``[T, B]``, without the τ² factor.

    :func:`per_step_kl` is its mean times τ²; :func:`weighted_soft_label_kl` weighs its samples first.
    """
    log_p_student = F.log_softmax(_tempered(student_logits, tau, standardize), dim=-1)
    log_p_teacher = F.log_softmax(_tempered(teacher_logits.detach(), tau, standardize), dim=-1)
    # log_target keeps p_T·(log p_T − log p_S) finite where p_T underflows to 0.
    return F.kl_div(log_p_student, log_p_teacher.expand_as(log_p_student), reduction="none", log_target=True).sum(-1)


def per_step_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float, standardize: bool = False) -> Tensor:
    """Return TSER's ``KL_ts = τ² (1/T) sum_t mean_b KL(p_T^τ ‖ p_S^τ(t))``: the teacher is the target of every step.

    With ``standardize`` both logits are z-scored over the classes first (:func:`standardize_logits`).
    The teacher's logits ``[B, classes]`` are the target of each of the student's ``[T, B, classes]``:

    >>> import torch
    >>> teacher = torch.tensor([[3.0, 1.0, 0.0]])
    >>> per_step_kl(teacher.expand(4, 1, 3), teacher, tau=4.0).item()  # every step equals the teacher
    0.0
    >>> per_step_kl(torch.zeros(4, 1, 3), teacher, tau=4.0).item() > 0
    True
    """
    return tau**2 * _kl_by_step_and_sample(student_logits, teacher_logits, tau, standardize).mean()


def per_step_entropy(student_logits: Tensor, tau: float, standardize: bool = False) -> Tensor:
    """Return TSER's ``H_ts = (1/T) sum_t mean_b H(softmax(z_t/τ))``, the mean entropy of the student's step logits z_t.

    With ``standardize`` the logits are z-scored over the classes first (:func:`standardize_logits`).

    >>> import torch
    >>> round(per_step_entropy(torch.zeros(4, 2, 10), tau=1.0).item(), 4)  # uniform over 10 classes: ln 10
    2.3026
    """
    log_p = F.log_softmax(_tempered(student_logits, tau, standardize), dim=-1)
    return -(log_p.exp() * log_p).sum(-1).mean()


def tser_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float,
    tau: float,
    entropy_weight: float,
    label_smoothing: float = 0.0,
    standardize: bool = False,
) -> dict[str, Tensor]:
    """Return TSER's loss ``(1−α)·CE_ts + α·KL_ts − λ·H_ts`` as its terms ``ce``, ``kd``, ``entropy``.

    λ is ``entropy_weight``; ``CE_ts`` is :func:`~snn_lightning.losses.per_step_ce`, ``KL_ts``
    :func:`per_step_kl`, ``H_ts`` :func:`per_step_entropy`. ``standardize`` z-scores the logits of
    KL and entropy (:func:`standardize_logits`); CE keeps the raw logits. A student and teacher both
    undecided between two classes: CE ln 2, no KL, entropy ln 2.

    >>> import torch
    >>> terms = tser_terms(torch.zeros(4, 1, 2), torch.zeros(1, 2), torch.tensor([0]), alpha=0.5, tau=1.0, entropy_weight=0.1)
    >>> {name: round(value.item(), 4) for name, value in terms.items()}
    {'ce': 0.3466, 'kd': 0.0, 'entropy': -0.0693}
    """
    return {
        "ce": (1 - alpha) * per_step_ce(student_logits, targets, label_smoothing),
        "kd": alpha * per_step_kl(student_logits, teacher_logits, tau, standardize),
        "entropy": -entropy_weight * per_step_entropy(student_logits, tau, standardize),
    }


def classical_kd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float,
    tau: float,
    label_smoothing: float = 0.0,
    standardize: bool = False,
) -> dict[str, Tensor]:
    """Return classical KD's loss ``(1−α)·CE(z̄, y) + α·τ²·KL(p_T^τ ‖ softmax(z̄/τ))`` as its terms ``ce``, ``kd``.

    z̄ are the time-mean logits. ``standardize`` z-scores the time-mean and teacher logits of the KL term (:func:`standardize_logits`).
    """
    mean_logits = as_float32(student_logits).mean(0, keepdim=True)  # the time-mean logits as a one-step sequence
    return {
        "ce": (1 - alpha) * mean_ce(student_logits, targets, label_smoothing),
        "kd": alpha * per_step_kl(mean_logits, teacher_logits, tau, standardize),
    }


def weighted_soft_label_kl(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, tau: float) -> Tensor:
    """Return WSLD's ``τ² mean_b w_b·KL(p_T^τ ‖ softmax(z̄_b/τ))`` on the time-mean logits z̄ (Zhou et al., ICLR 2021).

    The weight ``w_b = 1 − exp(−CE(z̄_b, y_b) / CE(t_b, y_b))`` (both at temperature 1, without
    gradient; ``t_b`` the teacher's logits) is near 1 for samples the student gets more wrong than
    the teacher and near 0 where the teacher is the worse one, damping the variance of misleading
    soft labels. The authors' code (and BKDSNN's copy) weighs the soft cross-entropy
    ``−Σ_c p_T log p_S``; it differs from the KL by ``w_b·H(p_T^τ)``, which has no gradient, so
    training is the same and the term is 0 when the student matches the teacher.
    """
    mean_logits = as_float32(student_logits).mean(0)
    teacher = as_float32(teacher_logits.detach())
    ce_student = F.cross_entropy(mean_logits.detach(), targets, reduction="none")
    # The authors' 1e-7 keeps the ratio finite when the teacher is certain of the label (its CE is 0).
    ratio = ce_student / (F.cross_entropy(teacher, targets, reduction="none") + 1e-7)
    weight = 1 - torch.exp(-ratio)
    kl = _kl_by_step_and_sample(mean_logits.unsqueeze(0), teacher, tau, standardize=False)[0]
    return tau**2 * (weight * kl).mean()


def wsld_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    weight: float,
    tau: float,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:
    """Return WSLD's loss ``CE(z̄, y) + weight·τ²·mean_b w_b·KL(p_T^τ ‖ softmax(z̄/τ))`` as its terms ``ce``, ``kd``.

    z̄ are the time-mean logits; ``kd`` is ``weight`` × :func:`weighted_soft_label_kl`.
    """
    return {
        "ce": mean_ce(student_logits, targets, label_smoothing),
        "kd": weight * weighted_soft_label_kl(student_logits, teacher_logits, targets, tau),
    }


def _adapted_student(student_features: Tensor, teacher_features: Tensor, adapter: nn.Module) -> Tensor:
    """Return ``adapter`` applied to the time-mean student map area-resized to the teacher's H×W, in float32."""
    # The adapter runs in the features' dtype, so it works with its weights in bf16 (precision "bf16-true").
    student = student_features.mean(0)
    if student.shape[-2:] != teacher_features.shape[-2:]:
        # "area" averages when shrinking and repeats when growing; it commutes with a 1×1 conv adapter.
        student = F.interpolate(student, size=teacher_features.shape[-2:], mode="area")
    return as_float32(adapter(student))


def _feature_mse(prediction: Tensor, target: Tensor, reduction: FeatureReduction) -> Tensor:
    """Return the MSE of two ``[B, ...]`` maps, a mean over all elements or (``sum``) a sum per sample averaged over B."""
    if reduction == "mean":
        return F.mse_loss(prediction, target)
    if reduction == "sum":
        return F.mse_loss(prediction, target, reduction="sum") / prediction.shape[0]
    raise ValueError(f"reduction is {reduction!r}; use 'mean' or 'sum'")


def feature_kd_loss(
    student_features: Tensor, teacher_features: Tensor, adapter: nn.Module, reduction: FeatureReduction = "mean"
) -> Tensor:
    """Return KDSNN's feature loss ``MSE(adapter(mean_t F_S), F_T)``.

    Args:
        student_features: student feature map ``[T, B, C_s, h, w]`` (e.g. the last stage's spikes).
        teacher_features: teacher feature map ``[B, C_t, h', w']``; a target, so it gets no gradient.
        adapter: maps ``[B, C_s, h', w']`` to ``[B, C_t, h', w']`` (e.g. a 1×1 conv); the student map is
            resized to the teacher's ``h'×w'`` first.
        reduction: ``mean`` over batch, channels and positions, or ``sum`` over a sample's channels and
            positions, averaged over the batch (KDSNN's ``MSELoss(reduction="sum") / B``, weighted 7e-5);
            ``sum`` is ``C_t·h'·w'`` times ``mean``.
    """
    adapted = _adapted_student(student_features, teacher_features, adapter)
    return _feature_mse(adapted, as_float32(teacher_features.detach()), reduction)


def blurred_feature_kd_loss(
    student_features: Tensor,
    teacher_features: Tensor,
    adapter: nn.Module,
    generator: nn.Module,
    mask_ratio: float = 0.15,
    use_clip: bool = False,
    reduction: FeatureReduction = "mean",
) -> Tensor:
    """Return BKDSNN's blurred feature loss ``MSE(generator(mask(adapter(mean_t F_S))), F_T)``.

    Args:
        student_features: student feature map ``[T, B, C_s, h, w]``.
        teacher_features: teacher feature map ``[B, C_t, h', w']``; a target, so it gets no gradient.
        adapter: maps the resized time-mean student map to the teacher's channels, as in :func:`feature_kd_loss`.
        generator: regresses the teacher map from the masked one (BKDSNN: conv3×3 – ReLU – conv3×3).
        mask_ratio: probability that a channel of a sample is zeroed (drawn from torch's global generator).
        use_clip: rescale the target to ``F_T · max(A) / max(F_T)``, A the adapted student map before
            masking, maxima over the whole batch (BKDSNN's ``use_clip``); as in its code, max(A) is not
            detached, so the student also gets a gradient through the target's scale. The teacher map
            must have a positive maximum (a post-ReLU stage output has).
        reduction: ``mean`` over all elements, or ``sum`` per sample averaged over the batch (BKDSNN's
            ``MSELoss(reduction="sum") / B``), as in :func:`feature_kd_loss`.
    """
    adapted = _adapted_student(student_features, teacher_features, adapter)
    target = as_float32(teacher_features.detach())
    if use_clip:
        target = target / target.max() * adapted.max()
    keep = torch.rand(adapted.shape[:2] + (1, 1), device=adapted.device) >= mask_ratio
    generated = as_float32(generator(adapted * keep))
    return _feature_mse(generated, target, reduction)
