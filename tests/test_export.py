"""NIR export: graph structure, BatchNorm folding, neuron parameters, a simulation of the graph, the CLI, refusals."""

from collections import defaultdict, deque

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from torch import nn

from snn_lightning.cli import main
from snn_lightning.cli.export import input_shape_of
from snn_lightning.data import EventDataModule, StaticImageDataModule
from snn_lightning.errors import ConfigurationError
from snn_lightning.export import lif_node, to_nir
from snn_lightning.models import STAA, SpikingResNet, spiking_resnet_mini
from snn_lightning.modules import SNNClassifier
from snn_lightning.neurons import IF, LIF, PLIF, AdaptiveLIF

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run on one thread: tiny layers on a shared CPU are slower with two that wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mini_network(neuron: nn.Module | None = None) -> SpikingResNet:
    """Return the small test ResNet with BN statistics from a few training passes and random affine BN parameters."""
    torch.manual_seed(0)
    network = spiking_resnet_mini(10, in_channels=1, width_multiplier=0.25, time_steps=2, neuron=neuron)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(1.0, 2.0)
                module.bias.uniform_(0.2, 1.2)
        for _ in range(3):
            network(torch.randn(16, 1, 8, 8) * 2 + 0.5)
    return network.eval()


def round_trip(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    """Return the graph written with nir.write and read back with nir.read."""
    nir.write(tmp_path / "model.nir", graph)
    return nir.read(tmp_path / "model.nir")


def test_graph_structure_survives_a_file_round_trip(tmp_path):
    graph = round_trip(to_nir(mini_network(), (1, 8, 8)), tmp_path)
    block0, block1 = "stages_0_0_", "stages_1_0_"
    layer = {"conv1": nir.Conv2d, "neuron1": nir.LIF, "conv2": nir.Conv2d, "neuron2": nir.LIF}
    expected_types = {
        "input": nir.Input,
        "stem_0": nir.Conv2d,
        "stem_2": nir.LIF,
        **{block0 + name: kind for name, kind in layer.items()},
        f"{block1}downsample_0": nir.Conv2d,
        **{block1 + name: kind for name, kind in layer.items()},
        "pool": nir.AvgPool2d,
        "flatten": nir.Flatten,
        "fc": nir.Affine,
        "output": nir.Output,
    }
    assert {name: type(node) for name, node in graph.nodes.items()} == expected_types
    expected_edges = {
        ("input", "stem_0"),
        ("stem_0", "stem_2"),
        ("stem_2", f"{block0}conv1"),
        (f"{block0}conv1", f"{block0}neuron1"),
        (f"{block0}neuron1", f"{block0}conv2"),
        (f"{block0}conv2", f"{block0}neuron2"),
        ("stem_2", f"{block0}neuron2"),  # identity shortcut
        (f"{block0}neuron2", f"{block1}downsample_0"),
        (f"{block1}downsample_0", f"{block1}neuron2"),  # projection
        (f"{block0}neuron2", f"{block1}conv1"),
        (f"{block1}conv1", f"{block1}neuron1"),
        (f"{block1}neuron1", f"{block1}conv2"),
        (f"{block1}conv2", f"{block1}neuron2"),
        (f"{block1}neuron2", "pool"),
        ("pool", "flatten"),
        ("flatten", "fc"),
        ("fc", "output"),
    }
    assert len(graph.edges) == len(expected_edges) and set(graph.edges) == expected_edges
    np.testing.assert_array_equal(graph.nodes["input"].output_type["output"], [1, 8, 8])
    np.testing.assert_array_equal(graph.nodes[f"{block1}neuron2"].output_type["output"], [16, 4, 4])
    np.testing.assert_array_equal(graph.nodes["output"].input_type["input"], [10])
    assert int(graph.metadata["time_steps"]) == 2 and float(graph.metadata["dt"]) == 1.0


def test_folded_conv_is_weight_times_gamma_over_std_and_shifted_bias(tmp_path):
    network = mini_network()
    graph = round_trip(to_nir(network, (1, 8, 8)), tmp_path)
    block = network.stages[1][0]
    conv, norm = block.conv1.module, block.bn1.module
    assert norm.running_mean.abs().sum() > 0 and (norm.running_var - 1).abs().sum() > 0, "statistics were updated"
    std = torch.sqrt(norm.running_var + norm.eps)
    weight = conv.weight * (norm.weight / std)[:, None, None, None]
    bias = norm.bias - norm.running_mean * norm.weight / std
    node = graph.nodes["stages_1_0_conv1"]
    np.testing.assert_allclose(node.weight, weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(node.bias, bias.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(node.stride, [2, 2])
    np.testing.assert_array_equal(node.padding, [1, 1])


@pytest.mark.parametrize("conv_name", ["stem.0", "stages.1.0.conv1", "stages.1.0.downsample.0"])
def test_folded_conv_computes_conv_then_batchnorm(conv_name, tmp_path):
    network = mini_network()
    graph = round_trip(to_nir(network, (1, 8, 8)), tmp_path)
    modules = dict(network.named_modules())
    conv = modules[conv_name]
    parent, index = conv_name.rsplit(".", 1)
    norm = modules[f"{parent}.{int(index) + 1}"] if index.isdigit() else modules[f"{parent}.bn1"]
    node = graph.nodes[conv_name.replace(".", "_")]
    in_channels = node.weight.shape[1]
    x_seq = (torch.rand(2, 3, in_channels, 8, 8) < 0.3).float()
    with torch.no_grad():
        expected = norm(conv(x_seq))
    folded = F.conv2d(
        x_seq.flatten(0, 1),
        torch.from_numpy(node.weight),
        torch.from_numpy(node.bias),
        stride=tuple(int(s) for s in node.stride),
        padding=tuple(int(p) for p in node.padding),
    ).unflatten(0, (2, 3))
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-5)


def test_lif_node_maps_leak_input_decay_and_input_scale():
    lif = lif_node(0.5, 1.0, True, 1.0, 0.0, (2, 3, 3))
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (2, 3, 3)
    np.testing.assert_allclose(lif.tau, 2.0)
    np.testing.assert_allclose(lif.r, 1.0)
    np.testing.assert_allclose(lif.v_leak, 0.0)
    np.testing.assert_allclose(lif.v_threshold, 1.0)
    without_decay = lif_node(0.25, 1.0, False, 0.5, -0.1, (2, 3, 3))
    np.testing.assert_allclose(without_decay.tau, 4.0)
    np.testing.assert_allclose(without_decay.r, 4.0)  # the input is added undivided: r = tau
    np.testing.assert_allclose(without_decay.v_leak, -0.1)
    np.testing.assert_allclose(without_decay.v_reset, -0.1)
    leaks, scales = np.array([0.5, 0.25]).reshape(2, 1, 1), np.array([1.0, 2.0]).reshape(2, 1, 1)
    per_channel = lif_node(leaks, scales, False, 1.0, 0.0, (2, 3, 3))
    np.testing.assert_allclose(per_channel.tau[:, 0, 0], [2.0, 4.0])
    np.testing.assert_allclose(per_channel.r[:, 0, 0], [2.0, 8.0])  # r = N tau
    integrator = lif_node(0.0, 1.0, False, 1.0, 0.0, (2, 3, 3))
    assert isinstance(integrator, nir.IF)
    np.testing.assert_allclose(integrator.r, 1.0)


def test_exported_neurons_carry_each_layers_tau_and_threshold(tmp_path):
    network = mini_network(PLIF(init_tau=3.0, decay_input=False, v_threshold=0.5))
    with torch.no_grad():
        network.stem[2].w.fill_(0.3)
    graph = round_trip(to_nir(network, (1, 8, 8)), tmp_path)
    stem = graph.nodes["stem_2"]
    tau = 1.0 / torch.sigmoid(torch.tensor(0.3)).item()
    np.testing.assert_allclose(stem.tau, tau, rtol=1e-6)
    np.testing.assert_allclose(stem.r, tau, rtol=1e-6)
    np.testing.assert_allclose(stem.v_threshold, 0.5)
    np.testing.assert_allclose(graph.nodes["stages_0_0_neuron1"].tau, 3.0, rtol=1e-6)


def simulate(graph: nir.NIRGraph, images: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Return the outputs ``[T, B, N]`` of ``graph`` stepped by forward Euler (dt = 1), fed ``images`` at every step."""
    sources, order = defaultdict(list), []
    indegree = {name: 0 for name in graph.nodes}
    for source, target in graph.edges:
        sources[target].append(source)
        indegree[target] += 1
    ready = deque(name for name, count in indegree.items() if count == 0)
    while ready:
        order.append(name := ready.popleft())
        for source, target in graph.edges:
            if source == name:
                indegree[target] -= 1
                if indegree[target] == 0:
                    ready.append(target)

    def param(value: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=torch.float64)

    membranes, outputs = {}, []
    for _ in range(time_steps):
        values = {}
        for name in order:
            node = graph.nodes[name]
            current = images if isinstance(node, nir.Input) else sum(values[source] for source in sources[name])
            if isinstance(node, nir.Conv2d):
                current = F.conv2d(
                    current,
                    param(node.weight),
                    param(node.bias),
                    tuple(int(s) for s in node.stride),
                    tuple(int(p) for p in node.padding),
                    tuple(int(d) for d in node.dilation),
                    int(node.groups),
                )
            elif isinstance(node, (nir.LIF, nir.IF)):
                v = membranes.get(name, param(node.v_reset).expand_as(current))
                if isinstance(node, nir.LIF):
                    v = v + (param(node.v_leak) - v + param(node.r) * current) / param(node.tau)
                else:
                    v = v + param(node.r) * current
                current = (v > param(node.v_threshold)).double()
                membranes[name] = torch.where(current.bool(), param(node.v_reset), v)
            elif isinstance(node, nir.AvgPool2d):
                current = F.avg_pool2d(current, tuple(node.kernel_size), tuple(node.stride), tuple(node.padding))
            elif isinstance(node, nir.Flatten):
                current = current.flatten(int(node.start_dim) + 1)
            elif isinstance(node, nir.Affine):
                current = current @ param(node.weight).T + param(node.bias)
            values[name] = current
        outputs.append(values["output"])
    return torch.stack(outputs)


@pytest.mark.parametrize(
    "neuron",
    [
        LIF(),
        PLIF(init_tau=3.0, decay_input=False),
        IF(v_threshold=1.5),
        AdaptiveLIF(init_leak=0.6, init_input_scale=1.5),
    ],
    ids=["LIF", "PLIF", "IF", "AdaptiveLIF"],
)
def test_nir_graph_simulated_step_by_step_gives_the_networks_logits(neuron, tmp_path):
    network = mini_network(neuron)
    if isinstance(neuron, AdaptiveLIF):
        with torch.no_grad():
            for module in network.modules():
                if isinstance(module, AdaptiveLIF):
                    module.leak_logit.normal_(0.0, 1.0)
                    module.input_scale.uniform_(0.5, 2.0)
    network = network.double()
    graph = round_trip(to_nir(network, (1, 8, 8)), tmp_path)
    images = torch.randn(4, 1, 8, 8, dtype=torch.float64) * 2
    spikes = []
    hook = network.stages[1][0].neuron2.register_forward_hook(lambda module, inputs, output: spikes.append(output))
    with torch.no_grad():
        expected = network(images)
    hook.remove()
    assert 0 < spikes[0].mean() < 1, "the last layer fires, so the comparison tests the dynamics"
    torch.testing.assert_close(simulate(graph, images, network.time_steps), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("neuron", "message"),
    [
        (STAA(), r"stem\.2 \(STAALayer\).*position_encoding, global_context, step_attention.*NIR export supports"),
        (LIF(v_reset=None), r"stem\.2 \(LIF\).*v_reset: null.*NIR export supports"),
    ],
    ids=["STAA", "soft-reset"],
)
def test_what_nir_cannot_express_is_refused_by_name(neuron, message):
    network = spiking_resnet_mini(10, in_channels=1, width_multiplier=0.25, time_steps=2, neuron=neuron)
    with pytest.raises(ConfigurationError, match=message):
        to_nir(network, (1, 8, 8))


def test_staa_with_every_part_off_exports_its_adaptive_lif():
    network = spiking_resnet_mini(
        10,
        in_channels=1,
        width_multiplier=0.25,
        neuron=STAA(position_encoding=False, global_context=False, step_attention=False),
    )
    assert isinstance(to_nir(network, (1, 8, 8)).nodes["stem_2"], nir.LIF)


def test_cli_export_writes_the_checkpoints_network(in_tmp_dir, capsys):
    torch.manual_seed(1)
    model = SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, time_steps=4)
    with torch.no_grad():
        model.network.fc.weight.normal_()
        model.network.stem[1].module.running_mean.uniform_(-1, 1)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.4.0",
    }
    torch.save(checkpoint, in_tmp_dir / "trained.ckpt")
    main(
        [
            "export",
            "--config",
            QUICKSTART,
            "--ckpt_path",
            "trained.ckpt",
            "--format",
            "nir",
            "--output",
            "out/model.nir",
        ]
    )
    written = in_tmp_dir / "out" / "model.nir"
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {written}: NIR graph") and "input 1x8x8" in line and "4 time steps" in line
    graph = nir.read(written)
    np.testing.assert_array_equal(graph.nodes["fc"].weight, model.network.fc.weight.detach().numpy())
    stem_conv, stem_norm = model.network.stem[0].module, model.network.stem[1].module
    std = torch.sqrt(stem_norm.running_var + stem_norm.eps)
    shift = stem_norm.bias - stem_norm.running_mean * stem_norm.weight / std
    np.testing.assert_allclose(graph.nodes["stem_0"].bias, shift.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert stem_conv.weight.shape == graph.nodes["stem_0"].weight.shape


def test_cli_export_without_a_checkpoint_file_is_one_error_line(in_tmp_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--config", QUICKSTART, "--ckpt_path", "last"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: checkpoint last is resolved only by fit")


def test_input_shape_comes_from_the_data_module():
    assert input_shape_of(StaticImageDataModule(dataset="digits")) == (1, 8, 8)
    assert input_shape_of(StaticImageDataModule(dataset="imagenet", image_size=160)) == (3, 160, 160)
    assert input_shape_of(EventDataModule(dataset="digits_saccades", frame_size=11)) == (2, 11, 11)


def spiking_mini_that_fires() -> SpikingResNet:
    """Return a random resnet_mini whose BatchNorm statistics make every layer fire (2-11 % at rest)."""
    torch.manual_seed(0)
    network = spiking_resnet_mini(num_classes=10, in_channels=1, time_steps=4, width_multiplier=0.5).eval()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.05, 0.2)
                module.bias.uniform_(0, 0.5)
    return network


def test_dt_writes_the_time_constants_in_seconds_of_that_step():
    network = spiking_resnet_mini(num_classes=10, in_channels=1, time_steps=4, neuron=IF())
    steps, seconds = to_nir(network, (1, 8, 8)), to_nir(network, (1, 8, 8), dt=1e-4)
    assert seconds.metadata["dt"] == 1e-4 and steps.metadata["dt"] == 1.0
    for name, node in steps.nodes.items():
        if isinstance(node, nir.IF):
            np.testing.assert_allclose(seconds.nodes[name].r, node.r / 1e-4, rtol=1e-6)
    lif = to_nir(spiking_mini_that_fires(), (1, 8, 8), dt=0.5)
    assert lif.nodes["stem_2"].tau == pytest.approx(np.full((16, 8, 8), 2.0 * 0.5))
    with pytest.raises(ConfigurationError, match="dt must be a positive time step in seconds, got 0"):
        to_nir(network, (1, 8, 8), dt=0)


def test_snntorch_imports_the_graph_written_for_its_step_to_the_same_logits():
    # snnTorch's importer fixes dt = 1e-4 s (beta = 1 - dt/tau); a graph in steps (dt = 1) is read with beta ≈ 1.
    # Its nir.Flatten becomes torch.nn.Flatten(start_dim=0), which flattens the batch too: batch 1 only (README).
    from snntorch import import_nir  # a dev dependency, with nirtorch

    network = spiking_mini_that_fires()
    images = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        expected = network(images)[:, 0]
    assert expected.std(0).max() > 0.01, "the layers must fire for the comparison to mean something"

    def snntorch_logits(dt: float) -> torch.Tensor:
        module, state, steps = import_nir.import_from_nir(to_nir(network, (1, 8, 8), dt=dt)), None, []
        for _ in range(network.time_steps):
            logits, state = module(images, state)
            steps.append(logits.reshape(-1))
        return torch.stack(steps).detach()

    torch.testing.assert_close(snntorch_logits(1e-4), expected, rtol=1e-5, atol=1e-5)
    assert (snntorch_logits(1.0) - expected).abs().max() > 0.01
