"""Spiking core: surrogates and LIF/PLIF/IF dynamics against hand computations and an independent loop."""

import itertools
import math

import pytest
import torch

from snn_lightning.neurons import IF, LIF, PLIF, ATan, Rectangle, Sigmoid, Triangle

# --- surrogates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "surrogate, x, expected",
    [
        (ATan(alpha=2.0), 0.0, 1.0),
        (ATan(alpha=2.0), 0.5, 1.0 / (1 + (math.pi / 2) ** 2)),
        (Sigmoid(alpha=4.0), 0.0, 1.0),
        (Sigmoid(alpha=4.0), 0.5, 4 * (1 / (1 + math.exp(-2))) * (1 - 1 / (1 + math.exp(-2)))),
        (Rectangle(width=1.0), 0.4, 1.0),
        (Rectangle(width=1.0), 0.6, 0.0),
        (Rectangle(width=2.0), -0.9, 0.5),
        (Triangle(width=1.0), 0.5, 0.5),
        (Triangle(width=1.0), -1.5, 0.0),
        (Triangle(width=2.0), 0.0, 0.5),
    ],
)
def test_surrogate_gradient_matches_formula(surrogate, x, expected):
    xt = torch.tensor([x], requires_grad=True)
    surrogate(xt).sum().backward()
    assert xt.grad.item() == pytest.approx(expected, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("surrogate", [ATan(), Sigmoid(), Rectangle(), Triangle()])
def test_surrogate_forward_is_heaviside(surrogate):
    x = torch.tensor([-1.0, -1e-6, 0.0, 1e-6, 3.0], dtype=torch.bfloat16)
    out = surrogate(x)
    assert out.dtype == torch.bfloat16
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_surrogate_width_must_be_positive():
    with pytest.raises(ValueError, match="width must be > 0"):
        Rectangle(width=0.0)


# --- LIF dynamics --------------------------------------------------------------------------------


def test_lif_hand_computed_hard_reset():
    # tau=2: h1 = 1.5/2 = 0.75; h2 = 0.75 + (0.5-0.75)/2 = 0.625; h3 = 0.625 + (2.5-0.625)/2 = 1.5625 -> spike
    x = torch.tensor([1.5, 0.5, 2.5, 1.9]).view(4, 1)
    # after the spike at t=3 the membrane is reset to 0: h4 = 1.9/2 = 0.95 -> no spike
    assert LIF()(x).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_lif_hand_computed_soft_reset_keeps_the_excess():
    # decay_input=False, tau=2, soft reset: h1 = 2.0 -> spike, v1 = 1.0; h2 = 1.0 - 0.5 + 0.2 = 0.7 -> none
    # v2 = 0.7; h3 = 0.7 - 0.35 + 0.7 = 1.05 -> spike
    x = torch.tensor([2.0, 0.2, 0.7]).view(3, 1)
    assert LIF(v_reset=None, decay_input=False)(x).flatten().tolist() == [1.0, 0.0, 1.0]


def test_if_integrates_without_leak():
    x = torch.full((5, 1), 0.4)
    # membrane 0.4, 0.8, 1.2 -> spike, reset 0, 0.4, 0.8
    assert IF()(x).flatten().tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]


class _RefSpike(torch.autograd.Function):
    """Independent Heaviside with an explicitly written ATan(alpha=2) derivative."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 1.0 / (1 + (math.pi / 2 * 2.0 * x) ** 2)


def reference_lif(x, tau, v_th, v_reset, decay_input, detach_reset):
    """Hand-written loop of DESIGN.md's equations, one step at a time, with a float32 membrane."""
    dtype, x = x.dtype, x.float()
    v0 = 0.0 if v_reset is None else v_reset
    v = torch.full_like(x[0], v0)
    out = []
    for t in range(x.shape[0]):
        if decay_input:
            h = v + (x[t] - (v - v0)) / tau
        else:
            h = v - (v - v0) / tau + x[t]
        s = _RefSpike.apply(h - v_th)
        sr = s.detach() if detach_reset else s
        v = h - v_th * sr if v_reset is None else h * (1 - sr) + v_reset * sr
        out.append(s)
    return torch.stack(out).to(dtype)


@pytest.mark.parametrize(
    "v_reset, decay_input, detach_reset, dtype",
    list(itertools.product([0.0, -0.2, None], [True, False], [False, True], [torch.float32, torch.bfloat16])),
)
def test_lif_matches_reference_loop_in_spikes_and_input_gradient(v_reset, decay_input, detach_reset, dtype):
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 50) * 1.5 + 0.8).to(dtype)
    x_ours = x.clone().requires_grad_(True)
    x_ref = x.clone().requires_grad_(True)
    neuron = LIF(tau=1.7, v_threshold=0.9, v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset)
    ours = neuron(x_ours)
    ref = reference_lif(x_ref, 1.7, 0.9, v_reset, decay_input, detach_reset)
    assert ours.dtype == dtype and ours.shape == x.shape
    assert torch.equal(ours, ref)
    assert 0.05 < ours.float().mean() < 0.95  # the test exercises both firing and silence
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=tolerance, atol=tolerance)


def test_lif_is_stateless_across_calls():
    neuron = LIF()
    x = torch.rand(4, 2, 8) * 2
    assert torch.equal(neuron(x), neuron(x))


def test_lif_rejects_tau_at_most_one():
    with pytest.raises(ValueError, match="tau must be > 1"):
        LIF(tau=1.0)


def test_plif_tau_receives_gradient_and_matches_lif_at_init():
    torch.manual_seed(1)
    x = torch.randn(4, 2, 16) + 1.0
    plif = PLIF(init_tau=3.0)
    assert plif.tau == pytest.approx(3.0, rel=1e-6)
    assert torch.equal(plif(x), LIF(tau=3.0)(x))
    (plif(x) * torch.randn(4, 2, 16)).sum().backward()
    assert plif.w.grad is not None and plif.w.grad.abs() > 0


def test_plif_gradient_wrt_leak_matches_finite_difference_of_smooth_path():
    # With a surrogate, d(loss)/d(w) flows through h = v + (x - v) k, k = sigmoid(w); compare the
    # autograd value against the reference loop differentiated with respect to tau directly.
    torch.manual_seed(2)
    x = torch.randn(5, 64) + 0.7
    weights = torch.randn(5, 64)
    plif = PLIF(init_tau=2.5)
    (plif(x) * weights).sum().backward()
    tau = torch.tensor(2.5, requires_grad=True)
    (reference_lif(x, tau, 1.0, 0.0, True, False) * weights).sum().backward()
    # dL/dw = dL/dtau * dtau/dw, tau = 1/sigmoid(w) -> dtau/dw = -(1 - sigmoid(w)) / sigmoid(w)
    k = 1 / 2.5
    expected = tau.grad * (-(1 - k) / k)
    torch.testing.assert_close(plif.w.grad, expected, rtol=1e-4, atol=1e-5)
