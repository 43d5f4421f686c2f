"""Time-major layers: batch layouts, folding time into the batch, BN shared over time, direct encoding."""

import pytest
import torch
from torch import nn

from snn_lightning.layers import (
    DirectEncoder,
    TemporalBatchNorm1d,
    TemporalBatchNorm2d,
    TimeDistributed,
    first_samples,
    is_time_major,
)


def test_time_distributed_equals_a_per_step_loop():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(4, 2, 3, 6, 6)
    out = TimeDistributed(conv)(x)
    assert out.shape == (4, 2, 5, 6, 6)
    torch.testing.assert_close(out, torch.stack([conv(x[t]) for t in range(4)]))


def test_time_distributed_pooling_and_linear_shapes():
    x = torch.randn(3, 2, 4, 8, 8)
    pooled = TimeDistributed(nn.AvgPool2d(2))(x)
    assert pooled.shape == (3, 2, 4, 4, 4)
    assert TimeDistributed(nn.Linear(4, 7))(torch.randn(3, 2, 4)).shape == (3, 2, 7)


def test_temporal_batchnorm_shares_statistics_over_time():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 5, 5) * 3 + torch.arange(4.0).view(4, 1, 1, 1, 1)
    bn = TemporalBatchNorm2d(2).train()
    out = bn(x)
    # every channel is normalised with one mean/variance over T, B, H, W
    flat = x.transpose(1, 2).transpose(0, 1).reshape(2, -1)
    expected = (x - flat.mean(1).view(1, 1, 2, 1, 1)) / torch.sqrt(
        flat.var(1, unbiased=False).view(1, 1, 2, 1, 1) + bn.eps
    )
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_mean, 0.1 * flat.mean(1))
    assert out.shape == x.shape


def test_temporal_batchnorm1d_shape():
    assert TemporalBatchNorm1d(6)(torch.randn(3, 4, 6)).shape == (3, 4, 6)


def test_direct_encoder_repeats_the_input():
    x = torch.randn(2, 1, 8, 8)
    encoder = DirectEncoder(time_steps=4)
    seq = encoder(x)
    assert seq.shape == (4, 2, 1, 8, 8)
    assert all(torch.equal(seq[t], x) for t in range(4))


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_direct_encoder_rejects_bad_time_steps(bad):
    with pytest.raises(ValueError, match="time_steps must be a positive integer"):
        DirectEncoder(time_steps=bad)


def test_batch_layout_of_images_and_event_frames():
    images, frames = torch.zeros(6, 3, 8, 8), torch.zeros(10, 6, 2, 8, 8)
    assert not is_time_major(images) and is_time_major(frames)
    assert first_samples(images, 2).shape == (2, 3, 8, 8)
    assert first_samples(frames, 2).shape == (10, 2, 2, 8, 8)
    assert first_samples(frames, 9).shape == frames.shape
