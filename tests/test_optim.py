"""LAMB: the update against a hand computation, the trust ratio's edge cases, param groups, state, YAML and the CLI."""

from __future__ import annotations

import io
import math
import re

import pytest
import torch
from conftest import REPO
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import OptimizerCallable

from snn_lightning.cli import SNNLightningCLI
from snn_lightning.errors import ConfigurationError
from snn_lightning.optim import Lamb


def lamb_by_hand(p: list[float], grads: list[list[float]], lr: float, wd: float, b1=0.9, b2=0.999, eps=1e-6):
    """Return the parameter after LAMB steps with ``grads``, in plain Python floats, one line per formula."""
    m, v = [0.0] * len(p), [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        r = [(mi / (1 - b1**t)) / (math.sqrt(vi / (1 - b2**t)) + eps) + wd * pi for mi, vi, pi in zip(m, v, p)]
        p_norm, r_norm = math.hypot(*p), math.hypot(*r)
        ratio = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
        p = [pi - lr * ratio * ri for pi, ri in zip(p, r)]
    return p


def run_lamb(start: list[float], grads: list[list[float]], **settings) -> torch.Tensor:
    """Return the float64 parameter ``start`` after one Lamb step per gradient in ``grads``."""
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = Lamb([param], **settings)
    for grad in grads:
        param.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
    return param.detach()


def test_first_step_is_the_weight_norm_along_the_sign_of_the_gradient() -> None:
    # Step 1: m̂ = g, v̂ = g², so r = g/(|g| + ε) ≈ sign(g) and φ·r has the norm of p: p moves by lr·‖p‖.
    after = run_lamb([3.0, 4.0], [[0.5, -2.0]], lr=0.1)
    expected = torch.tensor([3.0, 4.0], dtype=torch.float64) - 0.1 * 5.0 * torch.tensor([1.0, -1.0]) / math.sqrt(2)
    assert torch.allclose(after, expected, atol=1e-6)
    assert after.tolist() == pytest.approx(lamb_by_hand([3.0, 4.0], [[0.5, -2.0]], lr=0.1, wd=0.0), rel=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_two_steps_match_the_hand_computation(weight_decay: float) -> None:
    grads = [[0.5, -2.0], [-1.0, 0.25]]
    after = run_lamb([3.0, 4.0], grads, lr=0.05, weight_decay=weight_decay)
    assert after.tolist() == pytest.approx(lamb_by_hand([3.0, 4.0], grads, lr=0.05, wd=weight_decay), rel=1e-12)


def test_trust_ratio_is_one_for_a_zero_parameter_or_a_zero_update() -> None:
    # ‖p‖ = 0: the step is lr·r (plain Adam), so a zero-initialised parameter still moves.
    after = run_lamb([0.0, 0.0], [[0.5, -2.0]], lr=0.1)
    assert torch.allclose(after, -0.1 * torch.tensor([0.5 / (0.5 + 1e-6), -2.0 / (2.0 + 1e-6)], dtype=torch.float64))
    assert torch.isfinite(after).all()
    # ‖r‖ = 0 (zero gradient, no decay): nothing moves, no NaN.
    assert run_lamb([3.0, 4.0], [[0.0, 0.0]], lr=0.1).tolist() == [3.0, 4.0]


def test_each_param_group_uses_its_own_weight_decay() -> None:
    decayed, exempt = (torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64)) for _ in range(2))
    optimizer = Lamb([{"params": [decayed]}, {"params": [exempt], "weight_decay": 0.0}], lr=0.05, weight_decay=0.5)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.5, 0.0]
    grads = [[0.5, -2.0], [-1.0, 0.25]]
    for grad in grads:
        decayed.grad, exempt.grad = torch.tensor(grad, dtype=torch.float64), torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
    assert decayed.tolist() == pytest.approx(lamb_by_hand([3.0, 4.0], grads, lr=0.05, wd=0.5), rel=1e-12)
    assert exempt.tolist() == pytest.approx(lamb_by_hand([3.0, 4.0], grads, lr=0.05, wd=0.0), rel=1e-12)
    assert decayed.tolist() != pytest.approx(exempt.tolist())


def test_always_adapt_false_gives_groups_without_weight_decay_plain_adam_steps() -> None:
    # timm's default: no trust ratio where weight_decay is 0, so the no-decay group steps as Adam does.
    decayed, exempt, adam_twin = (torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64)) for _ in range(3))
    lamb = Lamb(
        [{"params": [decayed]}, {"params": [exempt], "weight_decay": 0.0}],
        lr=0.05,
        weight_decay=0.5,
        always_adapt=False,
    )
    adam = torch.optim.Adam([adam_twin], lr=0.05, eps=1e-6)
    grads = [[0.5, -2.0], [-1.0, 0.25]]
    for grad in grads:
        for param in (decayed, exempt, adam_twin):
            param.grad = torch.tensor(grad, dtype=torch.float64)
        lamb.step()
        adam.step()
    assert exempt.tolist() == pytest.approx(adam_twin.tolist(), rel=1e-12)
    assert decayed.tolist() == pytest.approx(lamb_by_hand([3.0, 4.0], grads, lr=0.05, wd=0.5), rel=1e-12)


def test_parameters_without_gradient_are_left_alone() -> None:
    used, unused = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = Lamb([used, unused], lr=0.1, weight_decay=0.1)
    used.grad = torch.ones(2)
    optimizer.step()
    assert unused.tolist() == [1.0, 1.0] and unused not in optimizer.state
    assert optimizer.param_groups[0]["step"] == 1 and len(optimizer.state) == 1  # timm counts steps per group


def test_state_dict_round_trip_continues_identically() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    inputs = torch.randn(8, 3)

    def step(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        net(inputs).square().mean().backward()
        optimizer.step()

    optimizer = Lamb(model.parameters(), lr=0.01, weight_decay=0.02)
    for _ in range(3):
        step(model, optimizer)
    twin.load_state_dict(model.state_dict())
    restored = Lamb(twin.parameters(), lr=0.01, weight_decay=0.02)
    # Through bytes, as a checkpoint goes: a state_dict shares the moment tensors with its optimizer.
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    assert restored.param_groups[0]["step"] == 3
    assert torch.equal(restored.state[twin.weight]["exp_avg_sq"], optimizer.state[model.weight]["exp_avg_sq"])
    step(model, optimizer)
    step(twin, restored)
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)


def test_closure_loss_is_returned() -> None:
    param = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    optimizer = Lamb([param])

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = param.square().sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == pytest.approx(5.0)
    assert param.tolist() != [1.0, 2.0]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"lr": -0.1}, "Lamb lr is -0.1; set model.optimizer.init_args.lr to a value >= 0"),
        ({"betas": (0.9, 1.0)}, "Lamb betas is [0.9, 1.0]; set model.optimizer.init_args.betas to two values in [0, 1"),
        ({"betas": (-0.1, 0.999)}, "Lamb betas is [-0.1, 0.999]"),
        ({"eps": 0.0}, "Lamb eps is 0.0; set model.optimizer.init_args.eps to a value > 0"),
        ({"weight_decay": -1.0}, "Lamb weight_decay is -1.0; set model.optimizer.init_args.weight_decay to a value"),
    ],
)
def test_bad_settings_raise_configuration_error(settings: dict, named: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        Lamb([torch.nn.Parameter(torch.zeros(2))], **settings)


def test_a_bad_param_group_setting_names_the_group() -> None:
    groups = [
        {"params": [torch.nn.Parameter(torch.zeros(2))]},
        {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": -1},
    ]
    with pytest.raises(ConfigurationError, match=re.escape("Lamb lr is -1; set lr of param group 1 to a value >= 0")):
        Lamb(groups)


def test_yaml_class_path_builds_lamb_through_optimizer_callable() -> None:
    # The route LightningCLI takes for `model.optimizer` (an OptimizerCallable argument).
    parser = ArgumentParser()
    parser.add_argument("--optimizer", type=OptimizerCallable)
    config = parser.parse_string(
        "optimizer:\n"
        "  class_path: snn_lightning.optim.Lamb\n"
        "  init_args: {lr: 0.005, weight_decay: 0.02, betas: [0.9, 0.99]}\n"
    )
    factory = parser.instantiate_classes(config).optimizer
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = factory([{"params": [parameter], "weight_decay": 0.0}])
    assert isinstance(optimizer, Lamb)
    expected = {"lr": 0.005, "betas": (0.9, 0.99), "eps": 1e-6, "weight_decay": 0.02, "always_adapt": True}
    assert {name: optimizer.defaults[name] for name in expected} == expected
    assert optimizer.defaults["max_grad_norm"] is None  # timm's Lamb, without its gradient clipping
    assert optimizer.param_groups[0]["weight_decay"] == 0.0


def test_the_cli_trains_two_steps_with_lamb_and_the_no_decay_group(in_tmp_dir) -> None:
    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--trainer.fast_dev_run",
        "2",
        "--model.optimizer",
        "snn_lightning.optim.Lamb",
        "--model.optimizer.init_args.lr",
        "0.004",
        "--model.optimizer.init_args.weight_decay",
        "0.05",
        "--model.exempt_from_weight_decay",
        "true",
    ]
    cli = SNNLightningCLI(args=args)
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, Lamb) and optimizer.defaults["lr"] == 0.004
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]
    assert cli.trainer.global_step == 2 and all(group["step"] == 2 for group in optimizer.param_groups)
