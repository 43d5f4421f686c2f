"""STAA-SNN: each aggregator part, the adaptive LIF, STAA networks, complexity, the STAA configs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from helpers import cli_modes, run_main
from torch import nn

from snn_lightning.cli import SNNLightningCLI, main
from snn_lightning.data import load_digits
from snn_lightning.errors import ConfigurationError
from snn_lightning.models import (
    STAA,
    GlobalContext,
    SpikingResNet,
    STAALayer,
    StepAttention,
    TemporalPositionEncoding,
    TimeStepDropout,
    measure_complexity,
    spiking_resnet19,
    spiking_resnet_mini,
)
from snn_lightning.modules import SNNClassifier
from snn_lightning.neurons import LIF, AdaptiveLIF

QUICKSTART_STAA = str(REPO / "configs" / "quickstart_staa.yaml")
PARTS = ("position_encoding", "global_context", "step_attention")


def perturbed(layer: STAALayer, seed: int = 0) -> STAALayer:
    """Return ``layer`` with random attention weights: every part starts as the identity otherwise."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if not name.startswith("neuron."):
                parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    return layer


def currents(time_steps: int = 4, batch: int = 3, channels: int = 8, size: int = 5, seed: int = 0) -> torch.Tensor:
    return 2 * torch.randn(time_steps, batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def staa_layers(model: nn.Module) -> list[STAALayer]:
    return [module for module in model.modules() if isinstance(module, STAALayer)]


def tiny_staa_model(time_steps: int = 4, width_multiplier: float = 0.25, **staa_args) -> SpikingResNet:
    return spiking_resnet_mini(
        10, in_channels=1, time_steps=time_steps, width_multiplier=width_multiplier, neuron=STAA(**staa_args)
    )


# --- the parts and the layer ---------------------------------------------------------------------


@pytest.mark.parametrize("time_steps", [1, 2, 4, 6])
def test_layer_and_model_shapes(time_steps: int) -> None:
    layer = perturbed(STAA().build(8, 6))
    spikes = layer(currents(time_steps))
    assert spikes.shape == (time_steps, 3, 8, 5, 5)
    model = tiny_staa_model(time_steps)
    assert model(torch.randn(2, 1, 8, 8)).shape == (time_steps, 2, 10)


def test_every_part_starts_as_the_identity() -> None:
    layer = STAA(step_dropout=0.0).build(8, 4)
    x = currents()
    torch.testing.assert_close(layer(x), layer.neuron(x))


def test_gradients_reach_every_parameter_of_every_part() -> None:
    layer = perturbed(STAA().build(8, 4))
    layer(currents()).sum().backward()
    names = [name for name, _ in layer.named_parameters()]
    for part in (*PARTS, "neuron"):
        assert any(name.startswith(part + ".") for name in names), f"{part} has no parameters"
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_gradients_reach_every_parameter_of_a_staa_network() -> None:
    model = tiny_staa_model()
    model(torch.randn(4, 1, 8, 8)).mean(0).sum().backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_step_dropout_is_the_identity_in_eval_mode() -> None:
    dropout = TimeStepDropout(0.5).eval()
    raw, attended = torch.zeros(4, 8, 3, 2, 2), torch.ones(4, 8, 3, 2, 2)
    assert torch.equal(dropout(raw, attended), attended)
    layer = perturbed(STAA(step_dropout=0.5).build(8, 4)).eval()
    without = copy.deepcopy(layer)
    without.step_dropout = None
    torch.testing.assert_close(layer(currents()), without(currents()))


def test_step_dropout_replaces_whole_steps_at_rate_p() -> None:
    torch.manual_seed(0)
    dropout = TimeStepDropout(0.1).train()
    raw, attended = torch.zeros(50, 200, 3, 2, 2), torch.ones(50, 200, 3, 2, 2)
    out = dropout(raw, attended)
    per_step = out.flatten(2)
    assert (per_step == per_step[..., :1]).all(), "a (step, sample) slice is replaced as a whole"
    rate = (per_step[..., 0] == 0).float().mean().item()
    assert rate == pytest.approx(0.1, abs=0.01)  # 10,000 draws: 3.3 standard deviations


@pytest.mark.parametrize("part", PARTS)
def test_each_flag_removes_its_part(part: str) -> None:
    torch.manual_seed(0)
    full = STAA().build(8, 4)
    reduced = STAA(**{part: False}).build(8, 4)
    assert getattr(full, part) is not None and getattr(reduced, part) is None
    part_parameters = sum(p.numel() for p in getattr(full, part).parameters())
    assert sum(p.numel() for p in reduced.parameters()) == sum(p.numel() for p in full.parameters()) - part_parameters
    layer = perturbed(full).eval()
    without = copy.deepcopy(layer)
    setattr(without, part, None)
    assert not torch.equal(layer(currents()), without(currents()))


def test_step_dropout_flag_removes_tsrd() -> None:
    assert STAA(step_dropout=0.0).build(8, 4).step_dropout is None
    assert STAA(global_context=False, step_attention=False).build(8, 4).step_dropout is None, "nothing to skip"
    layer = perturbed(STAA(step_dropout=0.3).build(8, 4)).train()
    without = copy.deepcopy(layer)
    without.step_dropout = None
    torch.manual_seed(0)
    assert not torch.equal(layer(currents()), without(currents()))


def test_all_flags_off_is_the_bare_neuron() -> None:
    template = STAA(position_encoding=False, global_context=False, step_attention=False, neuron=LIF())
    layer = template.build(8, 4)
    assert sum(p.numel() for p in layer.parameters()) == 0 and isinstance(layer.neuron, LIF)


def test_fewer_steps_give_the_first_steps_of_the_full_run() -> None:
    model = tiny_staa_model(time_steps=4)
    for layer in staa_layers(model):
        perturbed(layer)
    model.eval()
    image = torch.randn(3, 1, 8, 8)
    full = model(image)
    for time_steps in (1, 2):  # frames [k, B, C, H, W] run for k steps, through the first k encoding rows
        torch.testing.assert_close(model(image.expand(time_steps, *image.shape)), full[:time_steps])


def test_more_steps_than_the_encoding_has_rows_is_a_clear_error() -> None:
    layer = STAA().build(8, 4)
    message = r"rows for the network's time_steps=4 but the input has T=6 steps.*--model.time_steps 6"
    with pytest.raises(ConfigurationError, match=message):
        layer(currents(6))


def test_the_position_encoding_has_one_row_per_network_step() -> None:
    encodings = [layer.position_encoding for layer in staa_layers(tiny_staa_model(time_steps=3))]
    assert all(encoding.encoding.shape[0] == encoding.time_steps == 3 for encoding in encodings)
    trained = tiny_staa_model(time_steps=4).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch.*encoding"):  # a checkpoint loads into its own T only
        tiny_staa_model(time_steps=2).load_state_dict(trained)


def test_binary_spikes_out_of_every_staa_layer() -> None:
    model = spiking_resnet19(10, time_steps=2, width_multiplier=0.125, neuron=STAA())
    layers = staa_layers(model)
    assert len(layers) == 1 + 2 * (3 + 3 + 2)
    outputs: list[torch.Tensor] = []
    for layer in layers:
        perturbed(layer)
        layer.register_forward_hook(lambda module, args, out: outputs.append(out))
    model(torch.randn(2, 3, 16, 16))
    assert len(outputs) == len(layers)
    for spikes in outputs:
        assert ((spikes == 0) | (spikes == 1)).all()
    assert all(spikes.any() for spikes in outputs), "a layer never fired"


def test_stages_choose_where_the_aggregator_goes() -> None:
    model = spiking_resnet19(10, time_steps=2, width_multiplier=0.125, neuron=STAA(stages=[0, 3]))
    assert isinstance(model.stem[2], STAALayer)
    assert all(isinstance(m, STAALayer) for m in (model.stages[2][0].neuron1, model.stages[2][1].neuron2))
    assert all(isinstance(m, AdaptiveLIF) for m in (model.stages[0][0].neuron1, model.stages[1][2].neuron2))
    assert len(staa_layers(model)) == 1 + 2 * 2
    with pytest.raises(ConfigurationError, match=r"stages \[4\].*0 \(the stem\) to 3"):
        spiking_resnet19(10, width_multiplier=0.125, neuron=STAA(stages=[4]))
    with pytest.raises(ConfigurationError, match="non-empty"):
        STAA(stages=[])


def test_template_is_not_a_layer() -> None:
    with pytest.raises(TypeError, match="template"):
        STAA()(currents())


# --- the parts by their docstring equations, by hand ----------------------------------------------


def test_position_encoding_adds_each_steps_row_by_hand() -> None:
    encoding = TemporalPositionEncoding(channels=2, time_steps=3)
    with torch.no_grad():
        encoding.encoding.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).view(3, 2, 1, 1))
    x = torch.zeros(3, 1, 2, 1, 2)
    expected = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).view(3, 1, 2, 1, 1).expand(3, 1, 2, 1, 2)
    torch.testing.assert_close(encoding(x), expected)
    torch.testing.assert_close(encoding(x[:2]), expected[:2])  # fewer steps add the first rows


def global_context_by_hand() -> tuple[GlobalContext, torch.Tensor]:
    """A GC block on C = 2 channels (hidden 2, r = 1) and currents X [T=1, B=1, 2, 1×2] with set weights."""
    block = GlobalContext(channels=2, reduction=1)
    with torch.no_grad():
        block.key.weight.copy_(torch.tensor([[1.0, 0.0]]))  # k(X) = X_0
        block.value.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # v(X) = (X_1, X_0)
        block.query.weight.copy_(torch.eye(2))  # q(X) = X
        block.out.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        block.out.bias.zero_()
    x = torch.tensor([[0.0, math.log(3.0)], [2.0, 6.0]]).view(1, 1, 2, 1, 2)  # X_0 = (0, ln 3), X_1 = (2, 6)
    return block, x


def test_global_context_by_hand() -> None:
    block, x = global_context_by_hand()
    seen = []
    block.norm.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    y = block(x)
    # a = softmax_HW(X_0) = (1/4, 3/4); c = 1/4·(2, 0) + 3/4·(6, ln 3); mean_HW q(X) = (ln 3 / 2, 4)
    context = torch.tensor([5.0 + math.log(3.0) / 2, 4.0 + 0.75 * math.log(3.0)])
    torch.testing.assert_close(seen[0], context.view(1, 2))
    # LayerNorm of two values: ±d / sqrt(d² + eps), d half their difference; ReLU keeps the first.
    half_gap = (context[0] - context[1]).item() / 2
    normalised = half_gap / math.sqrt(half_gap**2 + block.norm.eps)
    gate = torch.tensor([2 / (1 + math.exp(-normalised)), 1.0])  # g = W_o (n, 0) = (n, 0); Y = X · 2σ(g)
    torch.testing.assert_close(y, x * gate.view(1, 1, 2, 1, 1))


def test_global_context_equals_its_equation_with_v_and_q_at_every_position() -> None:
    # The docstring's 1×1 convolutions k, v, q at every position, then the pooling; the block applies
    # v and q after pooling instead, which the docstring claims gives the same values.
    torch.manual_seed(0)
    block = GlobalContext(channels=6, reduction=2)
    nn.init.normal_(block.out.weight), nn.init.normal_(block.out.bias)
    x_seq = currents(time_steps=2, batch=3, channels=6, size=3)
    x = x_seq.flatten(0, 1)  # [T·B, C, H, W]

    def conv1x1(linear: nn.Linear, maps: torch.Tensor) -> torch.Tensor:
        return F.conv2d(maps, linear.weight[:, :, None, None])

    a = conv1x1(block.key, x).flatten(1).softmax(-1).view(-1, 1, 3, 3)  # where to look
    c = (a * conv1x1(block.value, x)).sum(dim=(-2, -1))  # global context [C/r]
    g = block.out(F.relu(block.norm(conv1x1(block.query, x).mean(dim=(-2, -1)) + c)))  # channel logits [C]
    expected = x * 2 * torch.sigmoid(g)[..., None, None]
    torch.testing.assert_close(block(x_seq), expected.view_as(x_seq))
    # The claim itself: v and q are linear, so they commute with the weighted sum and the mean over HW.
    torch.testing.assert_close(c, block.value((a * x).sum(dim=(-2, -1))))
    torch.testing.assert_close(conv1x1(block.query, x).mean(dim=(-2, -1)), block.query(x.mean(dim=(-2, -1))))


def test_step_attention_by_hand() -> None:
    # One channel (r = 1), kernel 2: h_t = ReLU(1·z_{t−1} + 2·z_t) with z_0 = 0, w_t = 2σ(h_t), Y[t] = X[t]·w_t.
    attention = StepAttention(channels=1, reduction=1, kernel_size=2)
    with torch.no_grad():
        attention.squeeze.weight.copy_(torch.tensor([[[1.0, 2.0]]]))
        attention.squeeze.bias.zero_()
        attention.excite.weight.fill_(1.0)
        attention.excite.bias.zero_()
    x = torch.tensor([[0.0, 2.0], [-4.0, -2.0], [1.0, 3.0]]).view(3, 1, 1, 1, 2)  # z = mean_HW X = (1, −3, 2)
    # h = (ReLU(0 + 2), ReLU(1 − 6), ReLU(−3 + 4)) = (2, 0, 1)
    w = torch.tensor([2 / (1 + math.exp(-2.0)), 1.0, 2 / (1 + math.exp(-1.0))])
    torch.testing.assert_close(attention.weights(x), w.view(1, 1, 3))
    torch.testing.assert_close(attention(x), x * w.view(3, 1, 1, 1, 1))


def test_step_attention_equals_its_equation_over_the_current_and_earlier_steps() -> None:
    torch.manual_seed(0)
    attention = StepAttention(channels=6, reduction=2, kernel_size=3)
    nn.init.normal_(attention.excite.weight), nn.init.normal_(attention.excite.bias)
    x_seq = currents(time_steps=4, batch=2, channels=6, size=3)
    z = x_seq.mean(dim=(-2, -1))  # [T, B, C]
    w1, b1 = attention.squeeze.weight, attention.squeeze.bias  # [C/r, C, k]
    w2, b2 = attention.excite.weight[:, :, 0], attention.excite.bias  # [C, C/r]
    weights = []
    for t in range(4):
        # W_1 over steps t−k+1..t, the steps before the first being zero.
        hidden = b1 + sum(z[t - 2 + j] @ w1[:, :, j].T for j in range(3) if t - 2 + j >= 0)
        weights.append(2 * torch.sigmoid(F.relu(hidden) @ w2.T + b2))  # [B, C]
    expected = x_seq * torch.stack(weights)[..., None, None]
    torch.testing.assert_close(attention(x_seq), expected)


# --- adaptive LIF --------------------------------------------------------------------------------


def test_adaptive_lif_defaults_equal_lif_tau_2() -> None:
    x = currents()
    torch.testing.assert_close(AdaptiveLIF().build(8, 4)(x), LIF(tau=2.0)(x))


def test_adaptive_lif_follows_its_equation_per_channel() -> None:
    neuron = AdaptiveLIF(channels=2, v_threshold=1.0)
    with torch.no_grad():
        neuron.leak_logit.copy_(torch.logit(torch.tensor([0.25, 0.8])))
        neuron.input_scale.copy_(torch.tensor([1.0, 0.3]))
    x = torch.tensor([[0.6, 2.0], [0.6, 2.0], [0.6, 2.0]]).view(3, 1, 2)  # [T, B, C]
    # channel 0: H = 0.6, 0.75, 0.7875 (no spike); channel 1: H = 0.6, 1.08 -> spike, reset, 0.6
    expected = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).view(3, 1, 2)
    torch.testing.assert_close(neuron(x), expected)
    torch.testing.assert_close(neuron.leak, torch.tensor([0.25, 0.8]))


def test_adaptive_lif_checks_its_channels() -> None:
    with pytest.raises(ValueError, match="init_leak"):
        AdaptiveLIF(init_leak=1.0)
    with pytest.raises(ValueError, match=r"has 4 channels.*\[T, B, 4, \.\.\.\]"):
        AdaptiveLIF(channels=4)(currents(channels=8))


# --- complexity ----------------------------------------------------------------------------------


def test_macs_of_a_two_layer_model_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    model.train()
    complexity = measure_complexity(model, torch.randn(1, 1, 8, 8))
    conv = 4 * 8 * 8 * (1 * 3 * 3)  # output elements × inputs per output
    linear = 10 * 256
    assert complexity.layer_macs == {"0": conv, "3": linear}
    assert complexity.layer_elements == {"0": (64, 256), "3": (256, 10)}
    assert complexity.total_macs == complexity.macs_per_step == conv + linear == 4864
    assert complexity.parameters == (4 * 9 + 4) + (256 * 10 + 10)
    assert model.training, "training flags are restored"


def test_macs_per_step_of_a_spiking_model() -> None:
    model = spiking_resnet_mini(10, in_channels=1, time_steps=4, width_multiplier=0.25)
    complexity = measure_complexity(model, torch.randn(1, 1, 8, 8), time_steps=4)
    per_step = 8 * 64 * 9 + 2 * 8 * 64 * 8 * 9 + 16 * 16 * 8 * 9 + 16 * 16 * 16 * 9 + 16 * 16 * 8 + 16 * 10
    assert complexity.macs_per_step == per_step and complexity.total_macs == 4 * per_step
    staa = measure_complexity(tiny_staa_model(), torch.randn(1, 1, 8, 8), time_steps=4)
    assert staa.parameters > complexity.parameters and staa.macs_per_step > per_step
    assert "MACs per step" in str(staa)


# --- training and the command line ---------------------------------------------------------------


def test_tiny_staa_model_overfits_a_batch_of_digits() -> None:
    torch.manual_seed(0)
    images, labels = load_digits("train")
    x = (torch.from_numpy(images[:64]) - 0.3053) / 0.3759
    y = torch.from_numpy(labels[:64]).long()
    model = tiny_staa_model(width_multiplier=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x).mean(0), y).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).mean(0).argmax(-1) == y).float().mean().item()
    assert accuracy == 1.0


def test_cli_evaluates_a_staa_checkpoint_at_fewer_steps(capsys, in_tmp_dir) -> None:
    fit = ["fit", "--config", QUICKSTART_STAA, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"]
    main_exit(fit + ["--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false"])
    out, _ = capsys.readouterr()
    assert "model complexity:" in out and "MACs per step" in out
    checkpoint = in_tmp_dir / "logs" / "quickstart_staa" / "latest" / "checkpoints" / "best.ckpt"
    assert checkpoint.is_file()
    test = ["test", "--config", QUICKSTART_STAA, "--ckpt_path", str(checkpoint), "--trainer.logger", "false"]
    per_step = ["--trainer.callbacks+=snn_lightning.callbacks.PerStepAccuracy"]
    full = SNNLightningCLI(args=[*test, *per_step], **cli_modes()).trainer.callback_metrics
    fewer = SNNLightningCLI(args=[*test, "--model.eval_time_steps", "2"], **cli_modes())
    assert fewer.model.time_steps == 4 and fewer.model.network.stem[2].position_encoding.time_steps == 4  # strict load
    assert fewer.trainer.callback_metrics["test/acc"] == full["test/acc_t2"]
    code, _, err = run_main(test + ["--model.time_steps", "6"], capsys)
    assert code == 2 and "trained with time_steps=4" in err and "Traceback" not in err


def main_exit(args: list[str]) -> int | None:
    """Run the CLI in-process; return its exit code (None when it returns normally)."""
    try:
        main(args)
    except SystemExit as exit_info:
        return exit_info.code
    return None


def test_classifier_takes_a_staa_template() -> None:
    model = SNNClassifier(arch="resnet_mini", in_channels=1, time_steps=2, neuron=STAA())
    assert len(staa_layers(model)) == 5
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 2, 10)


@pytest.mark.slow
def test_quickstart_staa_reaches_95_percent_test_accuracy(in_tmp_dir) -> None:
    cli = SNNLightningCLI(args=["--config", QUICKSTART_STAA], run=False, **cli_modes())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (metrics,) = cli.trainer.test(ckpt_path="best", datamodule=cli.datamodule)
    assert metrics["test/acc"] >= 0.95
