"""Distillation losses against hand computations; gradients, extreme logits and bfloat16."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn_lightning.distill.losses import (
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
from snn_lightning.losses import mean_ce, per_step_ce

# T=2, B=1, C=2: step 1 is uniform, step 2 gives p = (3/4, 1/4); the teacher is uniform.
S = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
T_UNIFORM = torch.tensor([[0.0, 0.0]])
Y = torch.tensor([0])


def random_batch(time_steps=3, batch=5, classes=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    s = torch.randn(time_steps, batch, classes, generator=generator) * 3
    t = torch.randn(batch, classes, generator=generator) * 3
    y = torch.randint(0, classes, (batch,), generator=generator)
    return s, t, y


def test_per_step_kl_by_hand():
    # step 1: KL(u ‖ u) = 0; step 2: 0.5 log(0.5/0.75) + 0.5 log(0.5/0.25) = 0.5 log(4/3)
    assert per_step_kl(S, T_UNIFORM, tau=1.0).item() == pytest.approx(0.5 * 0.5 * math.log(4 / 3), rel=1e-6)
    # tau = 2: step 2 has p = (√3, 1)/(√3 + 1); KL = 0.5 log((√3+1)² / (4√3)); times τ² = 4, averaged over T = 2
    expected = 4 * 0.5 * 0.5 * math.log((math.sqrt(3) + 1) ** 2 / (4 * math.sqrt(3)))
    assert per_step_kl(S, T_UNIFORM, tau=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_per_step_kl_is_the_batch_mean_of_the_class_sum_at_every_step():
    s, t, y = random_batch()
    tau = 4.0
    p_teacher = F.softmax(t / tau, -1)
    per_step = [
        (p_teacher * (p_teacher.log() - F.log_softmax(s[step] / tau, -1))).sum(-1).mean() for step in range(len(s))
    ]
    torch.testing.assert_close(per_step_kl(s, t, tau), tau**2 * torch.stack(per_step).mean())


def test_per_step_entropy_by_hand():
    expected = (math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    assert per_step_entropy(S, tau=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_tser_terms_are_the_weighted_per_step_ce_kl_and_entropy():
    s, t, y = random_batch()
    alpha, tau, lam = 0.3, 2.0, 0.05
    expected = {
        "ce": (1 - alpha) * per_step_ce(s, y),
        "kd": alpha * per_step_kl(s, t, tau),
        "entropy": -lam * per_step_entropy(s, tau),
    }
    torch.testing.assert_close(tser_terms(s, t, y, alpha, tau, lam), expected)


def test_classical_kd_terms_by_hand():
    # mean logits (log 3 / 2, 0): p = (√3, 1)/(√3 + 1) against the uniform teacher, tau = 1, alpha = 0.5
    ce = -math.log(math.sqrt(3) / (math.sqrt(3) + 1))
    kl = 0.5 * math.log((math.sqrt(3) + 1) ** 2 / (4 * math.sqrt(3)))
    terms = classical_kd_terms(S, T_UNIFORM, Y, alpha=0.5, tau=1.0)
    assert set(terms) == {"ce", "kd"}
    assert terms["ce"].item() == pytest.approx(0.5 * ce, rel=1e-6)
    assert terms["kd"].item() == pytest.approx(0.5 * kl, rel=1e-6)


def test_kd_gradient_is_alpha_tau_times_the_probability_gap():
    # d/dz [α τ² KL(p_T^τ ‖ softmax(z/τ))] = α τ (p_S^τ − p_T^τ): τ² makes the soft term's gradient τ
    # times the probability gap, so plain SGD sees a τ-times larger push than CE would give; Adam-type
    # optimizers divide that scale out, which is why τ = 4 fits the student more slowly under AdamW.
    s = torch.tensor([[[2.0, 0.0, -1.0]]], requires_grad=True)
    t = torch.tensor([[4.0, 0.0, 0.0]])
    y = torch.tensor([0])
    alpha, tau = 0.5, 4.0
    classical_kd_terms(s, t, y, alpha, tau)["kd"].backward()
    p_student = torch.tensor([math.exp(0.5), 1.0, math.exp(-0.25)])
    p_teacher = torch.tensor([math.e, 1.0, 1.0])
    expected = alpha * tau * (p_student / p_student.sum() - p_teacher / p_teacher.sum())
    torch.testing.assert_close(s.grad[0, 0], expected)
    # The CE term's gradient is (1 − α)(softmax(z) − onehot(y)), with no temperature.
    s.grad = None
    classical_kd_terms(s, t, y, alpha, tau)["ce"].backward()
    p = torch.tensor([math.exp(2.0), 1.0, math.exp(-1.0)])
    torch.testing.assert_close(s.grad[0, 0], (1 - alpha) * (p / p.sum() - torch.tensor([1.0, 0.0, 0.0])))


def test_tser_terms_by_hand_at_two_steps():
    # S: step 1 uniform, step 2 p = (3/4, 1/4); uniform teacher, tau 1, alpha 0.5, lambda 0.1.
    terms = tser_terms(S, T_UNIFORM, Y, alpha=0.5, tau=1.0, entropy_weight=0.1)
    ce = (math.log(2) - math.log(0.75)) / 2
    kl = 0.5 * math.log(4 / 3) / 2
    entropy = (math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    assert terms["ce"].item() == pytest.approx(0.5 * ce, rel=1e-6)
    assert terms["kd"].item() == pytest.approx(0.5 * kl, rel=1e-6)
    assert terms["entropy"].item() == pytest.approx(-0.1 * entropy, rel=1e-6)


def test_standardize_logits_by_hand():
    z = torch.tensor([[1.0, 2.0, 6.0]])  # mean 3, sample std sqrt(((-2)² + (-1)² + 3²) / 2) = sqrt(7)
    expected = torch.tensor([[-2.0, -1.0, 3.0]]) / math.sqrt(7.0)
    torch.testing.assert_close(standardize_logits(z), expected)


def test_standardized_kd_ignores_the_teachers_logit_scale_and_shift():
    s, t, y = random_batch()
    reference = per_step_kl(s, t, 2.0, standardize=True)
    torch.testing.assert_close(per_step_kl(s, 5.0 * t - 3.0, 2.0, standardize=True), reference)
    torch.testing.assert_close(per_step_kl(0.1 * s + 1.0, t, 2.0, standardize=True), reference)
    # Without it the same rescaling changes the loss: the student has to match the teacher's range.
    assert not torch.allclose(per_step_kl(s, 5.0 * t, 2.0), per_step_kl(s, t, 2.0))
    # Already standardised logits give the plain loss.
    torch.testing.assert_close(per_step_kl(standardize_logits(s), standardize_logits(t), 2.0), reference)


def test_standardized_terms_leave_ce_on_the_raw_logits():
    s, t, y = random_batch(time_steps=2)
    plain, standard = tser_terms(s, t, y, 0.5, 2.0, 0.1), tser_terms(s, t, y, 0.5, 2.0, 0.1, standardize=True)
    torch.testing.assert_close(standard["ce"], plain["ce"])
    torch.testing.assert_close(standard["kd"], 0.5 * per_step_kl(s, t, 2.0, standardize=True))
    torch.testing.assert_close(standard["entropy"], -0.1 * per_step_entropy(standardize_logits(s), 2.0))
    classical = classical_kd_terms(s, t, y, 0.5, 2.0, standardize=True)
    torch.testing.assert_close(
        classical["kd"], 0.5 * per_step_kl(standardize_logits(s.mean(0, keepdim=True)), standardize_logits(t), 2.0)
    )


# WSLD, two samples of two classes; T = 2 steps whose means are z̄_1 = (0, 0) and z̄_2 = (log 3, 0).
WSLD_S = torch.tensor([[[1.0, -1.0], [2 * math.log(3.0), 0.0]], [[-1.0, 1.0], [0.0, 0.0]]])
WSLD_T = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # p_T = (3/4, 1/4) and uniform
WSLD_Y = torch.tensor([0, 1])
# Sample weights at temperature 1: w = 1 − exp(−CE_S / CE_T).
# Sample 1: CE_S = log 2 (uniform), CE_T = −log(3/4). Sample 2: CE_S = −log(1/4), CE_T = log 2, ratio 2.
WSLD_W = (1 - math.exp(-math.log(2) / math.log(4 / 3)), 1 - math.exp(-2.0))


def test_wsld_at_temperature_one_by_hand():
    kl_1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL((3/4, 1/4) ‖ uniform)
    kl_2 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(uniform ‖ (3/4, 1/4))
    expected = (WSLD_W[0] * kl_1 + WSLD_W[1] * kl_2) / 2
    assert weighted_soft_label_kl(WSLD_S, WSLD_T, WSLD_Y, tau=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_wsld_tempers_the_soft_labels_but_not_the_sample_weights():
    # At τ = 2 the soft labels are softmax(z/2): (3/4, 1/4) becomes q = (√3, 1)/(√3 + 1); the weights stay at τ = 1.
    q = (math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1))
    kl_1 = q[0] * math.log(q[0] / 0.5) + q[1] * math.log(q[1] / 0.5)
    kl_2 = 0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1])
    expected = 4 * (WSLD_W[0] * kl_1 + WSLD_W[1] * kl_2) / 2
    assert weighted_soft_label_kl(WSLD_S, WSLD_T, WSLD_Y, tau=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_wsld_terms_are_the_full_ce_and_the_weighted_kl():
    s, t, y = random_batch()
    terms = wsld_terms(s, t, y, weight=2.5, tau=2.0, label_smoothing=0.1)
    assert set(terms) == {"ce", "kd"}
    torch.testing.assert_close(terms["ce"], mean_ce(s, y, 0.1))
    torch.testing.assert_close(terms["kd"], 2.5 * weighted_soft_label_kl(s, t, y, 2.0))


def test_wsld_weight_gets_no_gradient():
    # With w detached, d/dz̄ of w·KL is w·(p_S − p_T)/τ per sample (times τ², over B), as for classical KD.
    s, t, y = random_batch(time_steps=1)
    s.requires_grad_(True)
    tau = 2.0
    weighted_soft_label_kl(s, t, y, tau).backward()
    ratio = F.cross_entropy(s[0].detach(), y, reduction="none") / (F.cross_entropy(t, y, reduction="none") + 1e-7)
    weight = (1 - torch.exp(-ratio)).unsqueeze(1)
    gap = F.softmax(s[0].detach() / tau, dim=1) - F.softmax(t / tau, dim=1)
    torch.testing.assert_close(s.grad[0], tau * weight * gap / s.shape[1])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_tser_without_entropy_equals_classical_kd_at_one_time_step(label_smoothing):
    s, t, y = random_batch(time_steps=1)
    tser = tser_terms(s, t, y, 0.5, 4.0, 0.0, label_smoothing)
    assert tser.pop("entropy").item() == 0.0
    torch.testing.assert_close(tser, classical_kd_terms(s, t, y, 0.5, 4.0, label_smoothing))


def test_tser_differs_from_classical_kd_over_several_steps():
    s, t, y = random_batch(time_steps=4)
    tser, classical = tser_terms(s, t, y, 0.5, 4.0, 0.0), classical_kd_terms(s, t, y, 0.5, 4.0)
    assert not torch.allclose(tser["ce"], classical["ce"]) and not torch.allclose(tser["kd"], classical["kd"])


LOGIT_LOSSES = {  # each combined loss is the sum of its terms
    "per_step_kl": lambda s, t, y: per_step_kl(s, t, 4.0),
    "per_step_entropy": lambda s, t, y: per_step_entropy(s, 4.0),
    "tser": lambda s, t, y: sum(tser_terms(s, t, y, 0.5, 4.0, 0.01).values()),
    "classical": lambda s, t, y: sum(classical_kd_terms(s, t, y, 0.5, 4.0).values()),
    "wsld": lambda s, t, y: sum(wsld_terms(s, t, y, 1.0, 2.0).values()),
}


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_gradient_reaches_the_student_only(name):
    s, t, y = random_batch()
    s.requires_grad_(True)
    t.requires_grad_(True)
    LOGIT_LOSSES[name](s, t, y).backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_extreme_logits_give_finite_loss_and_gradient(name):
    generator = torch.Generator().manual_seed(0)
    s = (torch.randint(0, 2, (3, 4, 6), generator=generator) * 2.0 - 1.0) * 1e4
    t = (torch.randint(0, 2, (4, 6), generator=generator) * 2.0 - 1.0) * 1e4
    y = torch.randint(0, 6, (4,), generator=generator)
    s.requires_grad_(True)
    loss = LOGIT_LOSSES[name](s, t, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_bfloat16_inputs_are_computed_in_float32(name):
    s, t, y = random_batch()
    s16 = s.bfloat16().requires_grad_(True)
    loss = LOGIT_LOSSES[name](s16, t.bfloat16(), y)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(s16.grad).all()
    reference = LOGIT_LOSSES[name](s.bfloat16().float(), t.bfloat16().float(), y)
    torch.testing.assert_close(loss, reference)


def test_feature_kd_loss_by_hand_with_resize_and_adapter():
    generator = torch.Generator().manual_seed(0)
    student = torch.randint(0, 2, (2, 3, 4, 4, 4), generator=generator).float()  # spikes [T, B, C_s, 4, 4]
    teacher = torch.rand(3, 6, 2, 2, generator=generator)
    adapter = nn.Conv2d(4, 6, kernel_size=1)
    expected = F.mse_loss(adapter(F.avg_pool2d(student.mean(0), 2)), teacher)  # 4x4 -> 2x2 by area averaging
    torch.testing.assert_close(feature_kd_loss(student, teacher, adapter), expected)


def test_feature_kd_gradient_reaches_student_and_adapter_only():
    student = torch.rand(2, 3, 4, 2, 2, requires_grad=True)
    teacher = torch.rand(3, 5, 2, 2, requires_grad=True)
    adapter = nn.Conv2d(4, 5, kernel_size=1)
    feature_kd_loss(student, teacher, adapter).backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0 and adapter.weight.grad.abs().sum() > 0


# Feature maps for the reductions by hand: B = 2, C = 1, 1×2 maps; T = 2 steps of spikes.
FEAT_S = torch.tensor([[[[[1.0, 0.0]]], [[[0.0, 0.0]]]], [[[[1.0, 0.0]]], [[[0.0, 0.0]]]]])  # mean_t: (1, 0), (0, 0)
FEAT_T = torch.tensor([[[[0.0, 0.0]]], [[[2.0, 0.0]]]])  # squared errors 1, 0 and 4, 0: sum 5


@pytest.mark.parametrize("reduction, expected", [("mean", 5 / 4), ("sum", 5 / 2)])
def test_feature_kd_reductions_by_hand(reduction, expected):
    # mean: over all 4 elements; sum: KDSNN's sum over all elements divided by the batch size B = 2.
    assert feature_kd_loss(FEAT_S, FEAT_T, nn.Identity(), reduction).item() == pytest.approx(expected)
    loss = blurred_feature_kd_loss(FEAT_S, FEAT_T, nn.Identity(), nn.Identity(), 0.0, reduction=reduction)
    assert loss.item() == pytest.approx(expected)


def test_summed_feature_mse_is_the_mean_times_the_elements_of_a_sample():
    # The featkd/bkd configs' teacher map is 512×4×4: KDSNN's 7e-5 on the sum is 7e-5·8192 ≈ 0.573 on the mean.
    student = torch.rand(2, 3, 512, 4, 4)
    teacher = torch.rand(3, 512, 4, 4)
    summed = feature_kd_loss(student, teacher, nn.Identity(), "sum")
    torch.testing.assert_close(summed, 8192 * feature_kd_loss(student, teacher, nn.Identity(), "mean"))
    assert 7e-5 * 8192 == pytest.approx(0.573, abs=1e-3)


def test_an_unknown_feature_reduction_is_an_error():
    with pytest.raises(ValueError, match="reduction is 'Sum'; use 'mean' or 'sum'"):
        feature_kd_loss(FEAT_S, FEAT_T, nn.Identity(), "Sum")


# One sample, one channel, a 2×2 map: mean_t of the spikes A = [[.5, 1], [0, .5]] (max 1); teacher max 4.
CLIP_S = torch.tensor([[[[[1.0, 1.0], [0.0, 1.0]]]], [[[[0.0, 1.0], [0.0, 0.0]]]]])
CLIP_T = torch.tensor([[[[2.0, 4.0], [1.0, 0.0]]]])


@pytest.mark.parametrize(
    "use_clip, squared_errors",
    [
        (True, [0.0, 0.0, 0.25**2, 0.5**2]),  # target F_T·1/4 = [[.5, 1], [.25, 0]]
        (False, [1.5**2, 3.0**2, 1.0**2, 0.5**2]),
    ],
)
def test_use_clip_rescales_the_teacher_map_to_the_students_maximum_by_hand(use_clip, squared_errors):
    loss = blurred_feature_kd_loss(CLIP_S, CLIP_T, nn.Identity(), nn.Identity(), 0.0, use_clip, "sum")
    assert loss.item() == pytest.approx(sum(squared_errors))


def test_use_clip_scale_follows_the_adapted_student_and_the_teacher_gets_no_gradient():
    student = torch.rand(2, 3, 4, 2, 2, requires_grad=True)
    teacher = (torch.rand(3, 5, 2, 2) + 0.1).requires_grad_(True)
    adapter = nn.Conv2d(4, 5, kernel_size=1)
    generator = nn.Conv2d(5, 5, kernel_size=3, padding=1)
    loss = blurred_feature_kd_loss(student, teacher, adapter, generator, 0.0, use_clip=True)
    loss.backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0 and adapter.weight.grad.abs().sum() > 0
    adapted = adapter(student.detach().mean(0))
    target = teacher.detach() / teacher.detach().max() * adapted.max()
    torch.testing.assert_close(loss, F.mse_loss(generator(adapted), target))


def test_blurred_feature_kd_without_masking_and_identity_generator_is_feature_kd():
    student = torch.rand(2, 3, 4, 2, 2)
    teacher = torch.rand(3, 4, 2, 2)
    adapter = nn.Conv2d(4, 4, kernel_size=1)
    torch.testing.assert_close(
        blurred_feature_kd_loss(student, teacher, adapter, nn.Identity(), mask_ratio=0.0),
        feature_kd_loss(student, teacher, adapter),
    )


def test_blurred_feature_kd_masks_channels_then_generates():
    student = torch.rand(2, 8, 16, 2, 2)
    teacher = torch.rand(8, 16, 2, 2)
    generator = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    torch.manual_seed(3)
    loss = blurred_feature_kd_loss(student, teacher, nn.Identity(), generator, mask_ratio=0.5)
    torch.manual_seed(3)
    keep = torch.rand(8, 16, 1, 1) >= 0.5
    assert 0 < keep.sum() < keep.numel()
    torch.testing.assert_close(loss, F.mse_loss(generator(student.mean(0) * keep), teacher))


def test_feature_losses_accept_bfloat16_features():
    student = torch.rand(2, 3, 4, 4, 4).round().bfloat16()
    teacher = torch.rand(3, 4, 2, 2).bfloat16()
    adapter = nn.Conv2d(4, 4, kernel_size=1).bfloat16()
    for loss in (
        feature_kd_loss(student, teacher, adapter),
        blurred_feature_kd_loss(student, teacher, adapter, nn.Identity(), 0.15),
    ):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
