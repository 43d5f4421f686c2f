"""Knowledge distillation: losses as pure functions (and, later, the callbacks that apply them)."""

from snn_lightning.distill.losses import mean_ce, per_step_ce

__all__ = ["mean_ce", "per_step_ce"]
