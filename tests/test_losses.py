"""Classification losses on time-major logits against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from snn_lightning.losses import mean_ce, per_step_ce


def test_per_step_ce_by_hand():
    # T=2, B=1, C=2: step 1 logits (0, 0) -> CE = log 2; step 2 logits (log 3, 0) for class 0 -> CE = log(4/3)
    s = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    y = torch.tensor([0])
    assert per_step_ce(s, y).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)


def test_mean_ce_by_hand():
    # mean over T of the logits above is (log 3 / 2, 0): p0 = sqrt3 / (sqrt3 + 1)
    s = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    y = torch.tensor([0])
    expected = -math.log(math.sqrt(3) / (math.sqrt(3) + 1))
    assert mean_ce(s, y).item() == pytest.approx(expected, rel=1e-6)


def test_per_step_ce_is_the_mean_of_every_steps_cross_entropy_with_smoothing():
    torch.manual_seed(0)
    s = torch.randn(4, 8, 5)
    y = torch.randint(0, 5, (8,))
    expected = torch.stack([F.cross_entropy(s[t], y, label_smoothing=0.1) for t in range(4)]).mean()
    torch.testing.assert_close(per_step_ce(s, y, 0.1), expected)


def test_losses_agree_at_one_time_step():
    torch.manual_seed(1)
    s = torch.randn(1, 6, 3)
    y = torch.randint(0, 3, (6,))
    torch.testing.assert_close(per_step_ce(s, y), mean_ce(s, y))
