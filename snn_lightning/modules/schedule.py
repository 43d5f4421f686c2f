"""The default learning-rate schedule: linear warm-up, then cosine to 0, moved at every optimizer step."""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupCosine", "start_schedule", "warmup_cosine_factor"]


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Return the learning-rate factor of ``step``: linear from 1/(w+1) to 1 over ``w`` warm-up steps, then cosine to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    done = min(step - warmup_steps, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * done / (total_steps - warmup_steps)))


class WarmupCosine:
    """``LambdaLR``'s factor per step: linear warm-up over ``warmup_epochs``, then cosine to 0 at the end of ``max_epochs``.

    Its length in steps is set by :func:`start_schedule` when training starts: the trainer counts a
    fit's optimizer steps from the train loader, and building that loader earlier (in
    ``configure_optimizers``) happens before a resumed run's state is restored, which broke exact
    resume. Stepped per epoch, a short run would train its first half at the full rate and never
    anneal; stepped per optimizer step it ends at 0.
    """

    def __init__(self, warmup_epochs: int, max_epochs: int) -> None:
        """
        Args:
            warmup_epochs: epochs of linear warm-up.
            max_epochs: epochs of the whole schedule.
        """
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.warmup_steps = 0
        self.total_steps = max_epochs

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(step, self.warmup_steps, self.total_steps)


def start_schedule(scheduler: LambdaLR, steps: float) -> str:
    """Give a ``WarmupCosine`` schedule the fit's ``steps`` and set the rate of the step it starts (or resumes) at; return its interval.

    The interval is ``"step"``, or ``"epoch"`` when the trainer cannot count the steps (an
    iterable dataset without a length); the schedule then moves once per epoch.
    """
    schedule = scheduler.lr_lambdas[0]
    per_step = math.isfinite(steps) and steps >= schedule.max_epochs
    schedule.total_steps = int(steps) if per_step else schedule.max_epochs
    schedule.warmup_steps = round(schedule.warmup_epochs * schedule.total_steps / schedule.max_epochs)
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base_lr * schedule(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
    return "step" if per_step else "epoch"
