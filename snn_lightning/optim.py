"""Optimizers beyond torch.optim: LAMB, which the ImageNet recipes of FSTA-SNN and STAA-SNN train with.

The update is a pure function on tensors (``lamb_update``); ``Lamb`` only stores the moments and
hyperparameters and calls it for each parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigurationError

__all__ = ["Lamb", "lamb_update"]


def lamb_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    adapt: bool = True,
) -> None:
    """Apply LAMB step ``step`` (counted from 1) to ``param`` in place; ``exp_avg`` and ``exp_avg_sq`` are updated too.

    ``m = β1·m + (1−β1)·g``, ``v = β2·v + (1−β2)·g²``, ``m̂ = m/(1−β1^step)``, ``v̂ = v/(1−β2^step)``,
    ``r = m̂/(√v̂ + ε) + λ·p``, ``φ = ‖p‖/‖r‖`` (1 when either norm is 0, or ``adapt`` is False),
    ``p ← p − lr·φ·r``.
    """
    beta1, beta2 = betas
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denominator = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(eps)
    update = (exp_avg / (1 - beta1**step)).div_(denominator)
    if weight_decay != 0:
        update.add_(param, alpha=weight_decay)
    if not adapt:
        param.add_(update, alpha=-lr)
        return
    param_norm, update_norm = param.norm(), update.norm()
    # torch.where keeps the ratio on the device: no host synchronisation per parameter.
    trust_ratio = torch.where((param_norm > 0) & (update_norm > 0), param_norm / update_norm, 1.0)
    param.add_(update.mul_(trust_ratio), alpha=-lr)


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., ICLR 2020, arXiv 1904.00962): Adam with each parameter tensor's step scaled to ``lr·‖p‖``.

    For each parameter tensor ``p`` with gradient ``g``, at step ``t``::

        m = β1·m + (1−β1)·g            v = β2·v + (1−β2)·g²
        r = m̂ / (√v̂ + ε) + weight_decay·p,   m̂ = m/(1−β1^t),  v̂ = v/(1−β2^t)
        φ = ‖p‖ / ‖r‖   (1 when either norm is 0)
        p ← p − lr·φ·r

    The trust ratio φ makes the step of every layer proportional to its weight norm, so one
    learning rate suits layers of very different scales; the paper shows this keeps training
    stable at very large batches. Choose it for large-batch ImageNet training, as the FSTA-SNN
    recipe does; the CIFAR recipes of the papers use SGD with momentum.

    Compared with timm's ``Lamb``: gradients are not clipped here (timm clips their global norm to
    1 by default; ``trainer.gradient_clip_val: 1.0`` does the same), and ``always_adapt`` defaults
    to True, as in the paper: set it False for timm's default, a plain Adam step (φ = 1) on groups
    with ``weight_decay`` 0 such as the no-decay group of BN scales and biases.

    From YAML::

        optimizer:
          class_path: snn_lightning.optim.Lamb
          init_args: {lr: 0.005, weight_decay: 0.02}
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        always_adapt: bool = True,
    ) -> None:
        """
        Args:
            params: the parameters to optimise, or param groups (dicts) with their own values of the settings below.
            lr: learning rate: the step of each tensor is lr times its weight norm (φ·‖r‖ = ‖p‖).
            betas: decay rates of the running mean of the gradient and of its square, each in [0, 1).
            eps: added to the root of the second moment for numerical stability; > 0.
            weight_decay: decoupled weight decay λ added to the update before the trust ratio (r += λ·p); >= 0.
            always_adapt: apply the trust ratio to groups with weight_decay 0 too (the paper); False gives them plain Adam steps (timm's default).
        """
        super().__init__(
            params,
            {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "always_adapt": always_adapt},
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add ``param_group`` (missing settings taken from the defaults) after checking its settings are in range."""
        super().add_param_group(param_group)
        _check_settings(self.param_groups[-1], self.defaults, len(self.param_groups) - 1)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; return the loss ``closure`` recomputes (None without one)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise ConfigurationError(
                        "Lamb does not support sparse gradients; use torch.optim.SparseAdam for embeddings "
                        "built with sparse=True, or build them dense"
                    )
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                lamb_update(
                    param,
                    param.grad,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    state["step"],
                    group["lr"],
                    group["betas"],
                    group["eps"],
                    group["weight_decay"],
                    adapt=group["always_adapt"] or group["weight_decay"] != 0,
                )
        return loss


def _check_settings(group: dict[str, Any], defaults: dict[str, Any], index: int) -> None:
    """Raise ConfigurationError naming the out-of-range setting of param group ``index`` and where it was set."""

    def where(name: str) -> str:
        if group[name] is defaults[name]:
            return f"model.optimizer.init_args.{name}"
        return f"{name} of param group {index}"

    lr, betas, eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    if not lr >= 0:
        raise ConfigurationError(f"Lamb lr is {lr}; set {where('lr')} to a value >= 0, e.g. 1e-3")
    if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
        raise ConfigurationError(
            f"Lamb betas is {list(betas)}; set {where('betas')} to two values in [0, 1), e.g. [0.9, 0.999]"
        )
    if not eps > 0:
        raise ConfigurationError(f"Lamb eps is {eps}; set {where('eps')} to a value > 0, e.g. 1e-6")
    if not weight_decay >= 0:
        raise ConfigurationError(
            f"Lamb weight_decay is {weight_decay}; set {where('weight_decay')} to a value >= 0 (0 turns it off)"
        )
