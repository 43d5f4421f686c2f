"""Knowledge distillation: losses as pure functions, KD methods as callbacks, and teacher loading."""

from snn_lightning.distill.callbacks import (
    TSERKD,
    BlurredFeatureKD,
    ClassicalKD,
    DistillationHost,
    DistillationOutputs,
    FeatureKD,
    KDCallback,
)
from snn_lightning.distill.losses import (
    blurred_feature_kd_loss,
    classical_kd_loss,
    classical_kd_terms,
    feature_kd_loss,
    mean_ce,
    per_step_ce,
    per_step_entropy,
    per_step_kl,
    standardize_logits,
    tser_loss,
    tser_terms,
)
from snn_lightning.distill.teacher import TeacherCheckpointError, build_teacher, load_teacher, teacher_state_dict

__all__ = [
    "BlurredFeatureKD",
    "ClassicalKD",
    "DistillationHost",
    "DistillationOutputs",
    "FeatureKD",
    "KDCallback",
    "TSERKD",
    "TeacherCheckpointError",
    "blurred_feature_kd_loss",
    "build_teacher",
    "classical_kd_loss",
    "classical_kd_terms",
    "feature_kd_loss",
    "load_teacher",
    "mean_ce",
    "per_step_ce",
    "per_step_entropy",
    "per_step_kl",
    "standardize_logits",
    "teacher_state_dict",
    "tser_loss",
    "tser_terms",
]
