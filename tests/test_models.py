"""Spiking and ANN ResNets: shapes, time steps, spikes, neuron copies, gradients and parameter counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

from snn_lightning.layers import DirectEncoder
from snn_lightning.models import (
    ANN_ARCHITECTURES,
    SPIKING_ARCHITECTURES,
    SpikingResNet,
    ann_resnet18,
    ann_resnet34,
    spiking_resnet19,
    spiking_resnet20,
    spiking_resnet_mini,
)
from snn_lightning.neurons import LIF, PLIF, AdaptiveLIF, NeuronTemplate, SpikingNeuron

# builder name -> (input channels, input size) small enough for a fast CPU forward
SMALL_INPUTS = {
    "resnet_mini": (1, 8),
    "resnet19": (3, 32),
    "resnet20": (2, 32),
    "resnet18": (3, 32),
    "resnet34": (3, 32),
}


def small_model(name: str, **kwargs) -> SpikingResNet:
    channels, _ = SMALL_INPUTS[name]
    return SPIKING_ARCHITECTURES[name](10, in_channels=channels, time_steps=2, width_multiplier=0.125, **kwargs)


def small_image(name: str, batch: int = 2) -> torch.Tensor:
    channels, size = SMALL_INPUTS[name]
    return torch.randn(batch, channels, size, size)


def neurons(model: nn.Module) -> list[SpikingNeuron]:
    return [module for module in model.modules() if isinstance(module, SpikingNeuron)]


def test_architecture_names() -> None:
    assert set(SPIKING_ARCHITECTURES) == {
        *("resnet_mini", "resnet19", "resnet20", "resnet18", "resnet34"),
        *("convnet2", "plif_net", "vgg_small", "shd_mlp"),
    }
    assert set(ANN_ARCHITECTURES) == {"resnet18", "resnet34"}


@pytest.mark.parametrize("name", sorted(SMALL_INPUTS))
def test_spiking_shapes_static_and_frames(name: str) -> None:
    model = small_model(name)
    image = small_image(name)
    assert model(image).shape == (2, 2, 10)
    frames = torch.rand(3, *image.shape).round()
    assert model(frames).shape == (3, 2, 10), "event frames keep their own T"
    features = model.forward_features(image)
    assert features.ndim == 5 and features.shape[:3] == (2, 2, model.feature_channels)
    assert model.feature_channels == model.fc.in_features, "a ResNet's head pools the features into the FC layer"


def test_static_input_equals_repeated_frames() -> None:
    model = small_model("resnet19").eval()
    image = small_image("resnet19")
    frames = image.unsqueeze(0).repeat(2, 1, 1, 1, 1)
    torch.testing.assert_close(model(image), model(frames))


def test_frames_run_for_their_own_number_of_steps() -> None:
    model = small_model("resnet_mini")
    image = small_image("resnet_mini")
    assert model.time_steps == 2 and model(image).shape == (2, 2, 10)
    assert model(image.expand(5, *image.shape)).shape == (5, 2, 10)
    assert model(image.expand(1, *image.shape)).shape == (1, 2, 10)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="time_steps must be a positive integer"):
            DirectEncoder(bad)


@pytest.mark.parametrize("shape", [(2, 32, 32), (1, 2, 2, 3, 32, 32), (32,)])
def test_invalid_input_shape_message(shape: tuple[int, ...]) -> None:
    model = small_model("resnet19")
    with pytest.raises(ValueError, match=r"\[B, C, H, W\].*\[T, B, C, H, W\].*" + ", ".join(map(str, shape))):
        model(torch.zeros(shape))


def test_channel_mismatch_names_in_channels() -> None:
    model = small_model("resnet19")
    with pytest.raises(ValueError, match="2 channels.*in_channels=3"):
        model(torch.zeros(2, 2, 32, 32))


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="same length"):
        SpikingResNet(10, blocks=(1, 1), widths=(8,), strides=(1, 2))
    with pytest.raises(ValueError, match="positive"):
        SpikingResNet(10, blocks=(1, 0), widths=(8, 16), strides=(1, 2))
    with pytest.raises(ValueError, match="width_multiplier"):
        SpikingResNet(10, width_multiplier=0.0)
    with pytest.raises(ValueError, match="stem"):
        SpikingResNet(10, stem="vgg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="downsample"):
        SpikingResNet(10, downsample="maxpool")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["resnet19", "resnet20", "resnet18"])
def test_spikes_between_layers_are_binary(name: str) -> None:
    model = small_model(name)
    outputs: list[torch.Tensor] = []
    for neuron in neurons(model):
        neuron.register_forward_hook(lambda module, args, out: outputs.append(out))
    features = model.forward_features(small_image(name))
    assert len(outputs) == len(neurons(model)) > 0
    for spikes in [*outputs, features]:
        assert ((spikes == 0) | (spikes == 1)).all()
    assert any(spikes.any() for spikes in outputs), "no neuron fired at all"


def test_plif_template_is_copied_per_layer() -> None:
    template = PLIF(init_tau=3.0)
    model = spiking_resnet19(10, time_steps=2, width_multiplier=0.125, neuron=template)
    layer_neurons = neurons(model)
    assert len(layer_neurons) == 1 + 2 * (3 + 3 + 2)  # stem + two per basic block
    assert all(isinstance(neuron, PLIF) and neuron is not template for neuron in layer_neurons)
    leaks = [neuron.w for neuron in layer_neurons]
    assert len({id(w) for w in leaks}) == len(leaks)
    model_params = {id(p) for p in model.parameters()}
    assert all(id(w) in model_params for w in leaks) and id(template.w) not in model_params
    assert sum(1 for name, _ in model.named_parameters() if name.endswith(".w")) == len(layer_neurons)
    assert all(neuron.tau == pytest.approx(3.0) for neuron in layer_neurons)


def test_default_neuron_is_lif() -> None:
    model = spiking_resnet_mini(10)
    assert [type(neuron).__name__ for neuron in neurons(model)] == ["LIF"] * 5


class RecordingTemplate:
    """A neuron template that notes the stage, channels and T of every neuron it builds."""

    def __init__(self, stage: int | None = None, built: list | None = None) -> None:
        self.stage, self.built = stage, [] if built is None else built

    def for_stage(self, stage: int, num_stages: int) -> RecordingTemplate:
        return RecordingTemplate(stage, self.built)

    def build(self, channels: int, time_steps: int) -> nn.Module:
        self.built.append((self.stage, channels, time_steps))
        return LIF()


def test_each_neuron_is_built_for_its_stage_channels_and_time_steps() -> None:
    template = RecordingTemplate()
    SpikingResNet(10, blocks=(1, 1), widths=(8, 16), strides=(1, 2), time_steps=3, neuron=template)
    assert template.built == [(0, 8, 3), (1, 8, 3), (1, 8, 3), (2, 16, 3), (2, 16, 3)]


def test_neurons_and_staa_are_neuron_templates() -> None:
    from snn_lightning.models import STAA

    for template in (LIF(), PLIF(), AdaptiveLIF(), STAA()):
        assert isinstance(template, NeuronTemplate)
    lif = LIF(tau=3.0)
    assert lif.for_stage(1, 3) is lif
    copy = lif.build(8, 4)
    assert isinstance(copy, LIF) and copy is not lif and copy.tau == 3.0
    with pytest.raises(ValueError, match="neuron must be a neuron template.*got ReLU"):
        SpikingResNet(10, blocks=(1,), widths=(8,), strides=(1,), neuron=nn.ReLU())  # type: ignore[arg-type]


def test_gradients_reach_first_conv() -> None:
    model = small_model("resnet19", neuron=PLIF())
    model(small_image("resnet19")).mean(0).sum().backward()
    first_conv = model.stem[0].module
    assert isinstance(first_conv, nn.Conv2d)
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert all(neuron.w.grad is not None for neuron in neurons(model))


def test_width_multiplier_keeps_at_least_one_channel() -> None:
    model = spiking_resnet_mini(3, in_channels=1, time_steps=2, width_multiplier=0.001)
    assert model.fc.in_features == 1
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 2, 3)


def test_avgpool_downsample_handles_odd_sizes() -> None:
    model = spiking_resnet20(10, in_channels=2, time_steps=2, width_multiplier=0.125)
    # stem AvgPool 2 gives 15×15; the stride-2 stages give 8, 4, 2 in both branches of each block
    assert model.forward_features(torch.randn(2, 2, 30, 30)).shape[-2:] == (2, 2)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k


def _bn(c: int) -> int:
    return 2 * c


def _block(c_in: int, c_out: int) -> int:
    params = _conv(c_in, c_out, 3) + _bn(c_out) + _conv(c_out, c_out, 3) + _bn(c_out)
    if c_in != c_out:  # every width change in ResNet-19 comes with stride 2 and a 1×1 conv + BN shortcut
        params += _conv(c_in, c_out, 1) + _bn(c_out)
    return params


def test_spiking_resnet19_parameter_count() -> None:
    classes = 100
    expected = (
        _conv(3, 128, 3) + _bn(128)
        + 3 * _block(128, 128)
        + _block(128, 256) + 2 * _block(256, 256)
        + _block(256, 512) + _block(512, 512)
        + 512 * classes + classes
    )  # fmt: skip
    measured = sum(p.numel() for p in spiking_resnet19(classes).parameters())
    print(f"spiking_resnet19(100 classes): {measured:,} parameters")
    assert measured == expected == 12_615_396


def _torchvision_cifar_resnet18(num_classes: int) -> nn.Module:
    reference = torchvision.models.resnet18(num_classes=num_classes)
    reference.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    reference.maxpool = nn.Identity()
    return reference


def test_ann_resnet18_cifar_matches_torchvision() -> None:
    reference = _torchvision_cifar_resnet18(10).eval()
    model = ann_resnet18(10).eval()
    measured = sum(p.numel() for p in model.parameters())
    print(f"ann_resnet18(10 classes, cifar stem): {measured:,} parameters")
    assert measured == sum(p.numel() for p in reference.parameters())
    model.load_state_dict(reference.state_dict())
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(image), reference(image))


@pytest.mark.parametrize(("builder", "reference"), [(ann_resnet18, "resnet18"), (ann_resnet34, "resnet34")])
def test_ann_imagenet_stem_loads_torchvision_weights(builder, reference: str) -> None:
    torchvision_model = getattr(torchvision.models, reference)(num_classes=7).eval()
    model = builder(7, stem="imagenet").eval()
    model.load_state_dict(torchvision_model.state_dict())
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        # Channels-last and contiguous convolutions sum in different orders: float32 rounding, not a bug.
        torch.testing.assert_close(model(image), torchvision_model(image), rtol=1e-4, atol=1e-4)


def test_ann_keeps_channels_last_weights_after_loading_contiguous_ones() -> None:
    torchvision_model = torchvision.models.resnet18(num_classes=7).eval()
    model = ann_resnet18(7, stem="imagenet").eval()
    model.load_state_dict(torchvision_model.state_dict())
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.layer4[1].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert features.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_ann_shapes(stem: str) -> None:
    model = ann_resnet18(5, in_channels=2, stem=stem)
    image = torch.randn(2, 2, 32, 32)
    features = model.forward_features(image)
    assert features.shape == ((2, 512, 4, 4) if stem == "cifar" else (2, 512, 1, 1))
    assert model(image).shape == (2, 5)
    with pytest.raises(ValueError, match="stem"):
        ann_resnet18(5, stem="vgg")  # type: ignore[arg-type]


def test_ann_width_multiplier_scales_every_stage() -> None:
    model = ann_resnet18(10, in_channels=1, width_multiplier=0.25)
    assert model.conv1.out_channels == 16 and model.fc.in_features == 128
    assert [model.layer2[0].conv1.out_channels, model.layer3[0].conv1.out_channels] == [32, 64]
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 128, 4, 4)
    assert ann_resnet18(10).fc.in_features == 512  # the default is the plain ResNet-18
    with pytest.raises(ValueError, match="width_multiplier must be > 0"):
        ann_resnet18(10, width_multiplier=0.0)


def test_models_do_not_import_lightning() -> None:
    code = (
        "import sys, snn_lightning.models; "
        "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
