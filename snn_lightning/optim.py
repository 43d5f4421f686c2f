"""LAMB, which the ImageNet recipes of FSTA-SNN and STAA-SNN train with: timm's implementation with the paper's defaults.

Why a subclass and not timm's class by name: the config key ``snn_lightning.optim.Lamb`` keeps
its meaning (no gradient clipping inside the optimizer, the trust ratio on every group) and a
setting out of range is refused naming the config key, where timm accepts it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from timm.optim import Lamb as TimmLamb
from torch import Tensor

from .errors import ConfigurationError

__all__ = ["Lamb"]


class Lamb(TimmLamb):
    """LAMB (You et al., ICLR 2020, arXiv 1904.00962): Adam with each parameter tensor's step scaled to ``lr·‖p‖``.

    For each parameter tensor ``p`` with gradient ``g``, at step ``t`` (timm's ``Lamb``)::

        m = β1·m + (1−β1)·g            v = β2·v + (1−β2)·g²
        r = m̂ / (√v̂ + ε) + weight_decay·p,   m̂ = m/(1−β1^t),  v̂ = v/(1−β2^t)
        φ = ‖p‖ / ‖r‖   (1 when either norm is 0)
        p ← p − lr·φ·r

    The trust ratio φ makes the step of every layer proportional to its weight norm, so one
    learning rate suits layers of very different scales; the paper shows this keeps training
    stable at very large batches. Choose it for large-batch ImageNet training, as the FSTA-SNN
    recipe does; the CIFAR recipes of the papers use SGD with momentum.

    Against timm's defaults: gradients are not clipped here (timm clips their global norm to 1;
    ``trainer.gradient_clip_val: 1.0`` does the same), and ``always_adapt`` defaults to True, as in
    the paper: set it False for timm's default, a plain Adam step (φ = 1) on groups with
    ``weight_decay`` 0 such as the no-decay group of BN scales and biases. The step count is kept
    per param group (``optimizer.param_groups[i]["step"]``), as timm does.

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
            weight_decay: weight decay λ added to the update before the trust ratio (r += λ·p); >= 0.
            always_adapt: apply the trust ratio to groups with weight_decay 0 too (the paper); False gives them plain Adam steps (timm's default).
        """
        settings = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        _check_settings(settings, settings, 0)  # before timm's own checks, which name no config key
        super().__init__(
            params,
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            max_grad_norm=None,
            always_adapt=always_adapt,
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add ``param_group`` (missing settings taken from the defaults) after checking its settings are in range."""
        super().add_param_group(param_group)
        _check_settings(self.param_groups[-1], self.defaults, len(self.param_groups) - 1)


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
