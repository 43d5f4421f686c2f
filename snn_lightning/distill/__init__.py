"""Knowledge distillation: losses as pure functions, KD methods as callbacks, and teacher loading."""

from snn_lightning.distill.callbacks import (
    TSERKD,
    WSLDKD,
    BlurredFeatureKD,
    ClassicalKD,
    DistillationHost,
    DistillationOutputs,
    FeatureKD,
    KDCallback,
)
from snn_lightning.distill.losses import (
    FeatureReduction,
    blurred_feature_kd_loss,
    classical_kd_terms,
    feature_kd_loss,
    per_step_entropy,
    per_step_kl,
    standardize_logits,
    tser_terms,
    weighted_soft_label_kl,
    wsld_terms,
)
from snn_lightning.distill.teacher import TeacherCheckpointError, build_teacher, load_teacher, teacher_state_dict

__all__ = [
    "BlurredFeatureKD",
    "ClassicalKD",
    "DistillationHost",
    "DistillationOutputs",
    "FeatureKD",
    "FeatureReduction",
    "KDCallback",
    "TSERKD",
    "TeacherCheckpointError",
    "WSLDKD",
    "blurred_feature_kd_loss",
    "build_teacher",
    "classical_kd_terms",
    "feature_kd_loss",
    "load_teacher",
    "per_step_entropy",
    "per_step_kl",
    "standardize_logits",
    "teacher_state_dict",
    "tser_terms",
    "weighted_soft_label_kl",
    "wsld_terms",
]
