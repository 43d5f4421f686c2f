"""Export a trained :class:`~snn_lightning.models.SpikingResNet` to NIR, the Neuromorphic Intermediate Representation.

NIR (``pip install nir``) describes a spiking network as a graph of continuous-time primitives
(``Conv2d``, ``LIF``, ``AvgPool2d``, ``Affine``, …) that snnTorch, Norse, SpikingJelly and
neuromorphic hardware tool-chains read. :func:`to_nir` walks the network's own modules (stem,
stages of :class:`~snn_lightning.models.SpikingBasicBlock`, head) and emits one node per layer:

* convolution + BatchNorm → one ``Conv2d`` with the BatchNorm folded in (:func:`fold_batchnorm`);
* LIF, PLIF, AdaptiveLIF → ``LIF``; IF → ``IF`` (:func:`lif_node` explains the mapping);
* the residual addition → a second edge into the block's last neuron (NIR sums a node's inputs);
* average pooling → ``AvgPool2d``; the spatial mean of the head → ``AvgPool2d`` over the whole
  map, ``Flatten`` and the linear layer → ``Affine``.

Node names are the PyTorch module paths with ``.`` replaced by ``_`` (``stages_1_0_conv1``; the
BatchNorm folded into a conv takes the conv's name), so that importers can use them as torch
module names, which cannot contain dots. Time is counted in steps by default (``dt = 1``, stored in the
graph's metadata with ``time_steps``); ``to_nir(..., dt=1e-4)`` writes every ``tau`` for a simulator
step of ``dt`` seconds instead (``tau`` × dt, and an IF's ``r`` / dt), for importers that fix their
own ``dt``, such as snnTorch's (1e-4 s). The input is the analog image (or
event frame) fed at every step, as the direct encoder does; the output is the logits of each step,
and the prediction is the argmax of their mean over the steps.

What NIR cannot express is refused with a :class:`~snn_lightning.errors.ConfigurationError` naming
the module: STAA's attention (position encoding, global context, step attention), soft reset
(``v_reset: null``), BatchNorm without running statistics, and any module of another kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import nir
import numpy as np
import torch
from torch import Tensor, nn

from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import TemporalBatchNorm2d, TimeDistributed
from snn_lightning.models.spiking_resnet import SpikingBasicBlock, SpikingResNet
from snn_lightning.models.staa import STAALayer
from snn_lightning.neurons import IF, LIF, PLIF, AdaptiveLIF

__all__ = ["to_nir", "fold_batchnorm", "lif_node", "SUPPORTED"]

# Switchable parts of an STAA layer that act on the current before its neuron.
_STAA_PARTS = ("position_encoding", "global_context", "step_attention")
# Said by every refusal, so the user learns what would export.
SUPPORTED = (
    "NIR export supports SpikingResNet with Conv2d + BatchNorm (folded), LIF, PLIF, IF and AdaptiveLIF "
    "neurons with hard reset, average pooling, residual additions and the linear head"
)


class _Port(NamedTuple):
    """A node's name and the shape ``(C, H, W)`` or ``(N,)`` of one step of its output."""

    name: str
    shape: tuple[int, ...]


class _GraphBuilder:
    """Collects NIR nodes and edges in the order the network computes them."""

    def __init__(self) -> None:
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, path: str, node: nir.NIRNode, sources: Sequence[_Port], shape: Sequence[int]) -> _Port:
        """Add ``node`` under the name of module ``path`` with an edge from each source; return its output port."""
        name = path.replace(".", "_")
        self.nodes[name] = node
        self.edges += [(source.name, name) for source in sources]
        return _Port(name, tuple(int(size) for size in shape))


def _refuse(path: str, module: nn.Module, why: str) -> ConfigurationError:
    """Return the error for module ``path`` that NIR cannot express, saying why and what is supported."""
    return ConfigurationError(f"cannot export {path} ({type(module).__name__}) to NIR: {why}; {SUPPORTED}")


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Return the weight and bias (float64) of one convolution equal to ``norm(conv(x))`` in evaluation mode.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel, ``W' = W * s`` and
    ``b' = beta + (b - running_mean) * s`` (``b = 0`` for a conv without bias, ``gamma = 1`` and
    ``beta = 0`` for a BatchNorm without affine parameters). Neither module is changed.
    """
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError(
            "BatchNorm without running statistics (track_running_stats=False) normalises by batch and cannot be folded"
        )
    weight = conv.weight.detach().double()
    channels = weight.shape[0]
    gamma = torch.ones(channels, dtype=torch.float64) if norm.weight is None else norm.weight.detach().double()
    beta = torch.zeros(channels, dtype=torch.float64) if norm.bias is None else norm.bias.detach().double()
    bias = torch.zeros(channels, dtype=torch.float64) if conv.bias is None else conv.bias.detach().double()
    scale = gamma / torch.sqrt(norm.running_var.double() + norm.eps)
    return weight * scale.view(-1, 1, 1, 1), beta + (bias - norm.running_mean.double()) * scale


def lif_node(
    inv_tau: float | np.ndarray,
    input_scale: float | np.ndarray,
    decay_input: bool,
    v_threshold: float,
    v_reset: float,
    shape: Sequence[int],
) -> nir.LIF | nir.IF:
    """Return the NIR neuron (``LIF``, or ``IF`` when the leak is 0) equal to the discrete LIF with these parameters.

    SpikingJelly's charge equation with leak ``k = 1/tau`` and input scale ``N`` (1 but for
    AdaptiveLIF) is, with ``decay_input`` and without:

        H[t] = V[t-1] + k (N X[t] - (V[t-1] - V_reset))
        H[t] = V[t-1] - k (V[t-1] - V_reset) + N X[t]

    NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``; its forward-Euler step with ``dt = 1`` is
    ``v[t] = v[t-1] + (v_leak - v[t-1] + r I[t]) / tau``. Term by term: ``tau = 1/k``,
    ``v_leak = V_reset`` (the membrane relaxes to the reset potential, where it also starts), and
    ``r = N`` with ``decay_input`` (the input is divided by ``tau`` too) or ``r = N tau`` without
    (added undivided). So PLIF's learned leak ``k = sigmoid(w)`` gives ``tau = 1/sigmoid(w)``;
    AdaptiveLIF (``H = M (V - V_reset) + V_reset + N X``, no input decay) gives per channel
    ``tau = 1/(1 - M)`` and ``r = N/(1 - M)``. Both fire and reset alike: a spike when the
    membrane crosses ``v_threshold`` (NIR ``v > v_threshold``, ours ``>=``: they differ only at
    equality), then ``v = v_reset``. IF has ``k = 0``, which no finite ``tau`` gives; NIR's IF
    (``dv/dt = r I``, Euler step ``v += r I``) with ``r = N`` is exact.

    Args:
        inv_tau: the leak ``k = 1/tau`` in [0, 1): a number, or an array broadcastable to ``shape``.
        input_scale: factor ``N`` of the input current: a number, or an array broadcastable to ``shape``.
        decay_input: whether the input is multiplied by ``k`` too (SpikingJelly's default).
        v_threshold: membrane potential at which the neuron fires.
        v_reset: potential after a spike, and the resting potential the membrane leaks to.
        shape: shape ``(C, H, W)`` of one step of the layer; NIR wants every parameter at full shape.
    """
    inv_tau = np.broadcast_to(np.asarray(inv_tau, dtype=np.float64), shape)
    input_scale = np.broadcast_to(np.asarray(input_scale, dtype=np.float64), shape)

    def full(value: float | np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(value, shape), dtype=np.float32)

    if not inv_tau.any() and not decay_input:
        return nir.IF(r=full(input_scale), v_threshold=full(v_threshold), v_reset=full(v_reset))
    if not inv_tau.all():
        raise ValueError("a leak 1/tau of 0 has no finite NIR tau; use IF for a neuron without leak")
    tau = 1.0 / inv_tau
    r = input_scale if decay_input else input_scale * tau
    return nir.LIF(tau=full(tau), r=full(r), v_leak=full(v_reset), v_threshold=full(v_threshold), v_reset=full(v_reset))


def _neuron(neuron: nn.Module, path: str, shape: tuple[int, ...]) -> nir.LIF | nir.IF:
    """Return the NIR node of the spiking activation ``neuron`` (module ``path``) of a layer with output ``shape``."""
    if isinstance(neuron, STAALayer):
        parts = [name for name in _STAA_PARTS if getattr(neuron, name) is not None]
        if parts:
            raise _refuse(
                path,
                neuron,
                f"its STAA parts ({', '.join(parts)}) add a bias per step or re-weight the currents across steps "
                f"and channels, which no NIR node expresses; export a model trained with neuron LIF, PLIF or "
                f"AdaptiveLIF, or with STAA's position_encoding, global_context and step_attention all false",
            )
        return _neuron(neuron.neuron, f"{path}.neuron", shape)
    if not isinstance(neuron, (LIF, PLIF, IF, AdaptiveLIF)):
        raise _refuse(path, neuron, "NIR export has no mapping for this module")
    if neuron.v_reset is None:
        raise _refuse(
            path,
            neuron,
            "it resets by subtracting the threshold (v_reset: null), and NIR's neurons reset to v_reset; "
            "train with v_reset: 0.0 to export",
        )
    if isinstance(neuron, AdaptiveLIF):
        if neuron.channels not in (1, shape[0]):
            raise _refuse(path, neuron, f"it has {neuron.channels} channels but its layer has {shape[0]}")
        per_channel = (-1, 1, 1)
        inv_tau = torch.sigmoid(-neuron.leak_logit.detach().double()).numpy().reshape(per_channel)
        input_scale = neuron.input_scale.detach().double().numpy().reshape(per_channel)
    else:
        leak = neuron.inv_tau()  # a float, or PLIF's learned tensor
        inv_tau, input_scale = float(leak.detach() if isinstance(leak, Tensor) else leak), 1.0
    try:
        return lif_node(inv_tau, input_scale, neuron.decay_input, neuron.v_threshold, neuron.v_reset, shape)
    except ValueError as error:
        raise _refuse(path, neuron, str(error)) from error


def _conv(graph: _GraphBuilder, conv: nn.Module, norm: nn.Module | None, path: str, source: _Port) -> _Port:
    """Add the convolution ``conv`` (``TimeDistributed``) with ``norm`` (``TemporalBatchNorm2d`` or None) folded in."""
    layer = conv.module
    if layer.padding_mode != "zeros":
        raise _refuse(path, layer, f"padding_mode is {layer.padding_mode!r}, and NIR pads with zeros")
    if norm is None:
        weight = layer.weight.detach().double()
        bias = torch.zeros(weight.shape[0], dtype=torch.float64) if layer.bias is None else layer.bias.detach().double()
    else:
        try:
            weight, bias = fold_batchnorm(layer, norm.module)
        except ValueError as error:
            raise _refuse(path, norm, str(error)) from error
    node = nir.Conv2d(
        input_shape=source.shape[1:],
        weight=weight.float().numpy(),
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=bias.float().numpy(),
    )
    return graph.add(path, node, [source], node.output_type["output"])


def _pool_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Return the output side of a pooling window: NIR's (and torch's ``ceil_mode=False``) formula."""
    return (size + 2 * padding - kernel) // stride + 1


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    """Return a pooling setting given as one number or a pair as ``(height, width)``."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _avg_pool(graph: _GraphBuilder, pool: nn.AvgPool2d, path: str, source: _Port) -> _Port:
    """Add ``pool`` as an ``AvgPool2d`` node, refusing settings whose result NIR's plain average pool would not give."""
    kernel, stride, padding = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding)
    if pool.divisor_override is not None:
        raise _refuse(path, pool, "it divides by divisor_override, not the window size")
    if any(padding) and not pool.count_include_pad:
        raise _refuse(path, pool, "it leaves the padding out of the average (count_include_pad=False)")
    channels, *sides = source.shape
    shape = (channels, *(_pool_size(*dims) for dims in zip(sides, kernel, stride, padding)))
    actual = tuple(pool(torch.zeros(1, *source.shape)).shape[1:])
    if actual != shape:  # ceil_mode adds a partial window at the border
        raise _refuse(
            path,
            pool,
            f"ceil_mode gives {actual[1]}x{actual[2]} maps from {sides[0]}x{sides[1]}, NIR's pooling "
            f"{shape[1]}x{shape[2]}; use an input size divisible by the stride",
        )
    node = nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
    return graph.add(path, node, [source], shape)


def _sequential(graph: _GraphBuilder, layers: nn.Sequential, path: str, source: _Port) -> _Port:
    """Add the layers of a stem or shortcut (conv, BN, neuron, average pool) in order; return the last one's port."""
    modules = list(layers)
    index = 0
    while index < len(modules):
        module, name = modules[index], f"{path}.{index}"
        inner = module.module if isinstance(module, TimeDistributed) else None
        if isinstance(inner, nn.Conv2d):
            following = modules[index + 1] if index + 1 < len(modules) else None
            norm = following if isinstance(following, TemporalBatchNorm2d) else None
            source = _conv(graph, module, norm, name, source)
            index += 2 if norm is not None else 1
            continue
        if isinstance(inner, nn.AvgPool2d):
            source = _avg_pool(graph, inner, name, source)
        elif isinstance(module, TemporalBatchNorm2d):
            raise _refuse(name, module, "a BatchNorm is exported only folded into the convolution right before it")
        else:
            source = graph.add(name, _neuron(module, name, source.shape), [source], source.shape)
        index += 1
    return source


def _block(graph: _GraphBuilder, block: nn.Module, path: str, source: _Port) -> _Port:
    """Add a basic block: two conv+BN layers, the shortcut, and the last neuron fed by both (the residual sum)."""
    if type(block) is not SpikingBasicBlock:
        raise _refuse(path, block, "it is not a SpikingBasicBlock")
    shortcut = source
    if block.downsample is not None:
        shortcut = _sequential(graph, block.downsample, f"{path}.downsample", source)
    out = _conv(graph, block.conv1, block.bn1, f"{path}.conv1", source)
    out = graph.add(f"{path}.neuron1", _neuron(block.neuron1, f"{path}.neuron1", out.shape), [out], out.shape)
    out = _conv(graph, block.conv2, block.bn2, f"{path}.conv2", out)
    if shortcut.shape != out.shape:
        raise _refuse(path, block, f"its shortcut gives shape {shortcut.shape} but its branch {out.shape}")
    node = _neuron(block.neuron2, f"{path}.neuron2", out.shape)
    return graph.add(f"{path}.neuron2", node, [out, shortcut], out.shape)


def _head(graph: _GraphBuilder, fc: nn.Linear, source: _Port) -> _Port:
    """Add the readout: mean over H and W (``AvgPool2d`` over the whole map), ``Flatten``, ``fc`` as ``Affine``."""
    channels, height, width = source.shape
    whole = np.array([height, width])
    mean = nir.AvgPool2d(kernel_size=whole, stride=whole, padding=np.zeros(2, dtype=int))
    pool = graph.add("pool", mean, [source], (channels, 1, 1))
    # NIR's shapes have no batch axis, so torch's Flatten(start_dim=1) is start_dim=0 here.
    flatten = nir.Flatten(input_type={"input": np.array(pool.shape)}, start_dim=0, end_dim=-1)
    flat = graph.add("flatten", flatten, [pool], (channels,))
    weight = fc.weight.detach().float().numpy()
    bias = np.zeros(fc.out_features, np.float32) if fc.bias is None else fc.bias.detach().float().numpy()
    return graph.add("fc", nir.Affine(weight=weight, bias=bias), [flat], (fc.out_features,))


def to_nir(network: SpikingResNet, input_shape: Sequence[int], dt: float = 1.0) -> nir.NIRGraph:
    """Return the NIR graph of ``network`` (BatchNorm folded, running statistics) for one step of input ``(C, H, W)``.

    Args:
        network: a trained spiking ResNet (``model.network`` of an ``SNNClassifier``); it is not changed.
        input_shape: ``(channels, height, width)`` of one input image or event frame, without batch or time.
        dt: the simulator step in seconds the time constants are written for: 1 (time in steps; SpikingJelly's
            and Norse's importers take it as given) or the importer's fixed step (1e-4 for snnTorch).
    """
    if not dt > 0:
        raise ConfigurationError(f"dt must be a positive time step in seconds, got {dt}; 1 counts time in steps")
    if not isinstance(network, SpikingResNet):
        raise ConfigurationError(f"to_nir exports a SpikingResNet, got {type(network).__name__}; {SUPPORTED}")
    shape = tuple(int(size) for size in input_shape)
    if len(shape) != 3 or shape[0] != network.in_channels:
        raise ConfigurationError(
            f"input_shape must be (channels, height, width) with the network's {network.in_channels} channels, "
            f"got {shape}"
        )
    graph = _GraphBuilder()
    source = graph.add("input", nir.Input(input_type=np.array(shape)), [], shape)
    source = _sequential(graph, network.stem, "stem", source)
    for stage_index, stage in enumerate(network.stages):
        for block_index, block in enumerate(stage):
            source = _block(graph, block, f"stages.{stage_index}.{block_index}", source)
    source = _head(graph, network.fc, source)
    graph.add("output", nir.Output(output_type=np.array(source.shape)), [source], source.shape)
    for node in graph.nodes.values():  # one Euler step of dt seconds is one network step
        if isinstance(node, nir.LIF):
            node.tau = node.tau * np.float32(dt)
        elif isinstance(node, nir.IF):
            node.r = node.r / np.float32(dt)
    metadata = {
        "producer": "snn_lightning",
        "dt": dt,
        "time_steps": network.time_steps,
        "input": "the same analog image (or event frame) at every step",
        "readout": "output holds the logits of each step; the prediction is the argmax of their mean over the steps",
    }
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=metadata)
