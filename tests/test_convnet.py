"""Plain spiking CNNs for small images: shapes, the readout grid, time-shared dropout, neuron templates, errors."""

from __future__ import annotations

import pytest
import torch

from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import SpikeConv2d
from snn_lightning.models import CONVNET_LAYOUTS, SPIKING_ARCHITECTURES, STAA, SpikingConvNet, TimeSharedDropout
from snn_lightning.neurons import PLIF, SpikingNeuron


def small(**options) -> SpikingConvNet:
    return SpikingConvNet(10, features=(4, "M", 6, "M"), hidden=(8,), in_channels=1, time_steps=3, **options)


@pytest.mark.parametrize("name", sorted(CONVNET_LAYOUTS))
@pytest.mark.parametrize("side", [28, 32])
def test_named_convnets_take_28_and_32_pixel_images(name: str, side: int) -> None:
    net = SPIKING_ARCHITECTURES[name](10, in_channels=1, time_steps=2, width_multiplier=0.0625)
    logits = net(torch.rand(2, 1, side, side))
    assert logits.shape == (2, 2, 10)
    grid = CONVNET_LAYOUTS[name]["head_grid"]
    assert net.forward_features(torch.rand(2, 1, side, side)).shape == (2, 2, net.feature_channels, grid, grid)


def test_pooling_is_ceil_mode_and_the_head_grid_adapts() -> None:
    # 28 → 14 → 7 → 4 (ceil) with three poolings; 32 → 16 → 8 → 4: both fill a 4×4 grid exactly.
    net = SpikingConvNet(10, features=(2, "M", 2, "M", 3, "M"), hidden=(), head_grid=4, in_channels=1)
    pooled = [module for module in net.features if isinstance(getattr(module, "module", None), torch.nn.MaxPool2d)]
    assert len(pooled) == 3 and all(module.module.ceil_mode for module in pooled)
    assert net.fc.in_features == 3 * 4 * 4
    assert net.forward_features(torch.rand(1, 1, 28, 28)).shape[-2:] == (4, 4)


def test_hidden_layers_emit_binary_spikes_and_the_readout_is_analog() -> None:
    net = small().train()
    features = net.forward_features(torch.randn(4, 1, 28, 28) * 3)
    assert set(features.unique().tolist()) <= {0.0, 1.0}, "7×7 after two poolings: the grid is the pooled spikes"
    hidden = net.hidden(features.flatten(2))
    assert hidden.shape == (3, 4, 8) and set(hidden.unique().tolist()) <= {0.0, 1.0}
    assert net.forward_head(features).shape == (3, 4, 10)


def test_static_images_equal_repeated_frames_and_fewer_frames_are_the_first_steps() -> None:
    net = small().eval()
    image = torch.randn(2, 1, 28, 28)
    all_steps = net(image)
    torch.testing.assert_close(all_steps, net(image.expand(3, *image.shape)))
    one_step = net(image.expand(1, *image.shape))
    torch.testing.assert_close(one_step, all_steps[:1], msg="causal: one step equals the first of three")


def test_time_shared_dropout_drops_a_unit_at_every_step() -> None:
    torch.manual_seed(0)
    dropout = TimeSharedDropout(0.5).train()
    out = dropout(torch.ones(4, 3, 100))
    assert torch.equal(out[0], out[3]), "one mask per sample for all steps"
    assert set(out.unique().tolist()) == {0.0, 2.0}, "kept units scaled by 1/(1-p)"
    assert 0.3 < (out[0] == 0).float().mean() < 0.7
    assert torch.equal(dropout.eval()(torch.ones(4, 3, 100)), torch.ones(4, 3, 100))
    with pytest.raises(ConfigurationError, match=r"dropout must be in \[0, 1\), got 1.0"):
        TimeSharedDropout(1.0)


def test_every_spiking_layer_gets_its_own_neuron_from_the_template() -> None:
    net = small(neuron=PLIF(init_tau=3.0))
    plifs = [module for module in net.modules() if isinstance(module, PLIF)]
    assert len(plifs) == 3, "two conv layers and one hidden FC layer"
    assert len({id(plif.w) for plif in plifs}) == 3 and all(abs(plif.tau - 3.0) < 1e-5 for plif in plifs)


def test_staa_wraps_conv_and_fc_layers_and_stages_pick_among_them() -> None:
    everywhere = small(neuron=STAA(step_dropout=0.0))
    assert everywhere(torch.randn(2, 1, 28, 28)).shape == (3, 2, 10)
    plain_neurons = [m for m in everywhere.modules() if isinstance(m, SpikingNeuron)]
    assert len(plain_neurons) == 3
    first_only = small(neuron=STAA(stages=[0]))
    wrapped = [name for name, module in first_only.named_modules() if type(module).__name__ == "STAALayer"]
    assert wrapped == ["features.2"], "stage 0 is the first conv layer"
    with pytest.raises(ConfigurationError, match="beyond this network's 2"):
        small(neuron=STAA(stages=[3]))


def test_convs_after_the_first_are_spike_driven_with_the_density_setting() -> None:
    net = small(spike_conv_max_density=0.3)
    convs = [module for module in net.modules() if isinstance(module, SpikeConv2d)]
    assert len(convs) == 2 and all(conv.max_density == 0.3 for conv in convs)


def test_gradients_reach_the_first_conv() -> None:
    net = small()
    net(torch.randn(4, 1, 28, 28) * 2).mean(0).logsumexp(-1).sum().backward()
    first = next(module for module in net.modules() if isinstance(module, SpikeConv2d))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_bad_settings_name_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="at least one conv"):
        SpikingConvNet(10, features=("M",))
    with pytest.raises(ConfigurationError, match="must be positive"):
        SpikingConvNet(10, hidden=(0,))
    with pytest.raises(ConfigurationError, match="convnet2 has none; set model.checkpoint_blocks false"):
        SPIKING_ARCHITECTURES["convnet2"](10, checkpoint_blocks=True)
    with pytest.raises(ConfigurationError, match="in_channels=1"):
        small()(torch.rand(2, 3, 28, 28))
