"""LIF backends against the reference loop: spikes bit for bit, gradients (input, leak) to rounding.

Tolerances: float32 gradients agree to rtol 1e-5 (input) and 1e-4 (leak, summed over T and N in
another order and recovered as (H - V)/k); bfloat16 gradients are rounded from float32 values
that agree that closely, so they may differ by one bfloat16 step: rtol and atol 1.6e-2 of the
largest gradient. The Triton kernels run in-process on CUDA, else in a subprocess under
``TRITON_INTERPRET=1`` (set before triton is imported) on tiny sizes.
"""

import copy
import importlib.util
import itertools
import logging
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from snn_lightning.models import spiking_resnet_mini
from snn_lightning.modules import SNNClassifier
from snn_lightning.neurons import IF, LIF, PLIF, AdaptiveLIF, ATan, Rectangle, Sigmoid, Surrogate, Triangle
from snn_lightning.neurons.dynamics import LIFSettings, lif_multistep
from snn_lightning.neurons.kernels import (
    FusedLIF,
    compact_spikes,
    dispatch,
    lif_multistep_backend,
    resolve_backend,
    saved_spikes,
)
from snn_lightning.neurons.kernels.dispatch import fused_implementation
from snn_lightning.neurons.kernels.fused import TORCH_LOOP
from snn_lightning.neurons.kernels.ops import Implementation

HAS_TRITON = importlib.util.find_spec("triton") is not None
# Triton runs here when there is a GPU, or inside the TRITON_INTERPRET=1 subprocess started below.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else ("cpu" if os.environ.get("TRITON_INTERPRET") == "1" else None)

SURROGATES = [ATan(), Sigmoid(), Rectangle(), Triangle()]
CASES = list(
    itertools.product([1, 2, 4, 8], [0.0, None], [False, True], [True, False], [torch.float32, torch.bfloat16])
)
CASE_IDS = [f"T{t}-{'hard' if r is not None else 'soft'}-detach{d}-decay{i}-{str(dt)[6:]}" for t, r, d, i, dt in CASES]


class Quadratic(Surrogate):
    """A surrogate no kernel knows, so backends must call its ``derivative``."""

    def derivative(self, x):
        return (1 - x.square()).clamp(min=0) * 0.75


def assert_grad_close(actual, expected, dtype, rtol32=1e-5):
    scale = expected.detach().abs().max().float().clamp(min=1e-6)
    tolerance = (rtol32, rtol32 * scale) if dtype in (torch.float32, torch.float64) else (1.6e-2, 1.6e-2 * scale)
    torch.testing.assert_close(actual.float(), expected.float(), rtol=tolerance[0], atol=float(tolerance[1]))


def channels_last_steps(x):
    """Return ``x [T, B, C, H, W]`` with every step stored channels-last (memory order T, B, H, W, C)."""
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


@pytest.fixture(params=["cpp", "torch_loop"])
def cpu_implementation(request) -> Implementation:
    """Return each implementation the fused node has on the CPU: the C++ kernel and the PyTorch loop."""
    return fused_implementation("fused", torch.device("cpu")) if request.param == "cpp" else TORCH_LOOP


def triton_kernels() -> Implementation:
    """Return the Triton kernels on ``TRITON_DEVICE``."""
    return fused_implementation("triton", torch.device(TRITON_DEVICE))


def compare_with_reference(
    implementation, steps, v_reset, detach, decay, surrogate, dtype, device="cpu", leak_shape=(), arrange=None
):
    """Run the fused node with ``implementation`` and the reference on the same data; assert they agree.

    ``arrange`` lays the input out in memory (e.g. :func:`channels_last_steps`); the spikes must keep that layout.
    """
    torch.manual_seed(steps)
    x = (torch.randn(steps, 2, 3, 4, 5, device=device) * 1.5 + 0.8).to(dtype)
    x = x if arrange is None else arrange(x)
    leak = (0.3 + 0.4 * torch.rand(leak_shape, device=device)) if leak_shape else torch.tensor(1 / 1.7, device=device)
    weights = torch.randn(x.shape, device=device).to(dtype)
    results = []
    for fused in (False, True):
        x_run, leak_run = x.clone().requires_grad_(True), leak.clone().requires_grad_(True)
        settings = LIFSettings(0.9, v_reset, decay, detach, surrogate)
        if fused:
            spikes = FusedLIF.apply(x_run, leak_run, settings, implementation)
        else:
            spikes = lif_multistep(x_run, leak_run, settings)
        (spikes * weights).sum().backward()
        results.append((spikes, x_run.grad, leak_run.grad))
    (ref, ref_gx, ref_gk), (out, gx, gk) = results
    assert out.dtype == dtype and out.shape == x.shape and out.stride() == x.stride()
    assert gx.stride() == x.stride()
    assert torch.equal(out, ref)
    assert_grad_close(gx, ref_gx, dtype)
    assert gk.shape == leak.shape
    assert_grad_close(gk, ref_gk, dtype, rtol32=1e-4)
    return ref


# --- fused backend (C++ kernel and the PyTorch loop) ---------------------------------------------


@pytest.mark.parametrize("steps, v_reset, detach, decay, dtype", CASES, ids=CASE_IDS)
def test_fused_matches_reference(cpu_implementation, steps, v_reset, detach, decay, dtype):
    for surrogate in SURROGATES:
        spikes = compare_with_reference(cpu_implementation, steps, v_reset, detach, decay, surrogate, dtype)
    assert 0 < spikes.float().mean() < 1  # both firing and silence are exercised


@pytest.mark.parametrize(
    "leak_shape", [(3, 1, 1), (3, 4, 5), (3, 1, 5), (2, 1, 1, 1)], ids=["channel", "neuron", "broadcast", "batch"]
)
def test_fused_per_channel_leak_gradient_is_reduced(cpu_implementation, leak_shape):
    for v_reset, decay in [(0.0, True), (None, False), (-0.2, False)]:
        compare_with_reference(
            cpu_implementation, 4, v_reset, False, decay, ATan(), torch.float32, leak_shape=leak_shape
        )


@pytest.mark.parametrize("leak_shape", [(), (3, 1, 1), (3, 4, 5)], ids=["scalar", "channel", "neuron"])
def test_fused_runs_channels_last_input_in_place_of_memory(cpu_implementation, leak_shape):
    for v_reset, decay in [(0.0, True), (None, False)]:
        compare_with_reference(
            cpu_implementation,
            4,
            v_reset,
            False,
            decay,
            ATan(),
            torch.float32,
            leak_shape=leak_shape,
            arrange=channels_last_steps,
        )


def test_kernel_settings_encode_reset_and_surrogate():
    from snn_lightning.neurons.kernels.ops import SURROGATE_FROM_TABLE, KernelSettings

    hard = KernelSettings.of(LIFSettings(0.5, -0.2, False, True, Rectangle(0.7)), channels=3, inner=20)
    assert hard == (3, 20, 0.5, -0.2, True, False, True, 3, 0.7) and hard.v_rest == -0.2
    soft = KernelSettings.of(LIFSettings(v_reset=None, surrogate=Quadratic()), channels=1, inner=1)
    assert not soft.hard_reset and soft.v_rest == 0.0 and soft.surrogate_kind == SURROGATE_FROM_TABLE


def test_memory_order_lists_dims_outermost_first_and_keeps_time_first():
    from snn_lightning.neurons.kernels.fused import memory_order

    x = torch.zeros(4, 2, 3, 5, 6)
    assert memory_order(x) == (0, 1, 2, 3, 4)
    assert memory_order(channels_last_steps(x)) == (0, 1, 3, 4, 2)
    assert memory_order(x.transpose(0, 1)) == (0, 1, 2, 3, 4)  # time not outermost: the caller copies


def test_fused_accepts_unknown_surrogate_float16_and_float64(cpu_implementation):
    compare_with_reference(cpu_implementation, 4, -0.2, False, True, Quadratic(), torch.float32)
    compare_with_reference(cpu_implementation, 4, 0.0, False, True, ATan(), torch.float16)
    compare_with_reference(cpu_implementation, 4, None, False, False, Sigmoid(), torch.float64)


def test_fused_node_runs_the_implementation_it_is_given():
    calls = []

    def forward(*args):
        calls.append("forward")
        return TORCH_LOOP.forward(*args)

    def backward(*args):
        calls.append("backward")
        return TORCH_LOOP.backward(*args)

    x = (torch.randn(3, 2, 4) + 0.8).requires_grad_(True)
    settings = LIFSettings()
    spikes = FusedLIF.apply(x, torch.tensor(0.5), settings, Implementation(forward, backward, False))
    spikes.sum().backward()
    assert calls == ["forward", "backward"]
    assert torch.equal(spikes, lif_multistep(x, 0.5, settings))


# --- modules and dispatch --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda b: LIF(tau=1.5, backend=b), lambda b: PLIF(init_tau=2.5, backend=b), lambda b: IF(v_reset=None, backend=b)],
    ids=["LIF", "PLIF", "IF"],
)
def test_modules_agree_across_backends(make):
    torch.manual_seed(3)
    x = torch.randn(4, 2, 6, 8) + 0.6
    weights = torch.randn_like(x)
    outputs = {}
    for backend in ("reference", "fused", "auto"):
        neuron = make(backend)
        x_run = x.clone().requires_grad_(True)
        spikes = neuron(x_run)
        (spikes * weights).sum().backward()
        outputs[backend] = (spikes, x_run.grad, [p.grad for p in neuron.parameters()])
    for backend in ("fused", "auto"):
        assert torch.equal(outputs[backend][0], outputs["reference"][0])
        assert_grad_close(outputs[backend][1], outputs["reference"][1], torch.float32)
        for grad, ref in zip(outputs[backend][2], outputs["reference"][2]):
            assert_grad_close(grad, ref, torch.float32, rtol32=1e-4)
    assert "backend='fused'" in repr(make("fused"))


def adaptive_gradients(backend, device="cpu", dtype=torch.float32):
    """Return spikes and the gradients of input, leak M and input scale N of an AdaptiveLIF on ``backend``."""
    torch.manual_seed(6)
    neuron = AdaptiveLIF(init_leak=0.6, init_input_scale=0.9, v_reset=None, backend=backend).build(3, 4).to(device)
    with torch.no_grad():
        neuron.leak_logit.add_(torch.tensor([-0.3, 0.0, 0.4], device=device))
        neuron.input_scale.mul_(torch.tensor([0.8, 1.0, 1.3], device=device))
    x = (torch.randn(4, 2, 3, 5, device=device) + 0.8).to(dtype).requires_grad_(True)
    spikes = neuron(x)
    (spikes * torch.randn(x.shape, device=device).to(dtype)).sum().backward()
    return spikes, x.grad, neuron.leak_logit.grad, neuron.input_scale.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adaptive_lif_agrees_across_backends(dtype):
    reference = adaptive_gradients("reference", dtype=dtype)
    fused = adaptive_gradients("fused", dtype=dtype)
    assert torch.equal(fused[0], reference[0])
    for grad, ref in zip(fused[1:], reference[1:]):
        assert_grad_close(grad, ref, dtype, rtol32=1e-4)


def test_auto_runs_fused_on_cpu_and_says_so_once(caplog):
    dispatch._announced.discard(("fused", "cpu"))
    with caplog.at_level(logging.INFO, logger="snn_lightning"):
        assert resolve_backend("auto", torch.device("cpu")) == "fused"
        assert resolve_backend("auto", torch.device("cpu")) == "fused"
    assert [r.getMessage() for r in caplog.records].count("LIF backend 'auto' runs 'fused' on cpu tensors") == 1
    cpp = fused_implementation("fused", torch.device("cpu"))
    assert cpp is fused_implementation("fused", torch.device("cpu")) and cpp.builtin_surrogates
    assert fused_implementation("fused", torch.device("meta")) is TORCH_LOOP
    with pytest.raises(ValueError, match="backend 'auto' does not run the fused node"):
        fused_implementation("auto", torch.device("cpu"))


def test_unknown_backend_and_triton_on_cpu_are_clear_errors():
    with pytest.raises(ValueError, match="unknown LIF backend 'cuda'; choose one of auto, reference, fused, triton"):
        LIF(backend="cuda")
    if TRITON_DEVICE is None:
        with pytest.raises(RuntimeError, match="backend 'triton' cannot run"):
            LIF(backend="triton")(torch.ones(2, 3))


def test_torch_compile_of_a_model_matches_eager():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Unflatten(0, (3, 2)), PLIF(surrogate=Sigmoid()))
    x = torch.randn(6, 2, 5, 5)
    eager = model(x)
    eager.sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    compiled.sum().backward()
    assert torch.equal(compiled, eager)
    for grad, ref in zip((p.grad for p in model.parameters()), eager_grads):
        torch.testing.assert_close(grad, ref)


def test_missing_compiler_falls_back_to_the_torch_loop_with_a_warning(run_without_compiler):
    code = (
        "import warnings, torch\n"
        "from snn_lightning.neurons import LIF\n"
        "from snn_lightning.neurons.dynamics import lif_multistep\n"
        "x = torch.randn(3, 50) + 0.7\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    spikes = LIF(backend='fused')(x)\n"
        "assert torch.equal(spikes, LIF(backend='reference')(x))\n"
        "print([str(w.message) for w in caught])\n"
    )
    stdout = run_without_compiler(code)
    assert "could not build the fused CPU LIF kernel (compiler" in stdout
    assert "falls back to its PyTorch loop" in stdout


def test_truncated_cached_library_is_rebuilt_never_loaded(tmp_path):
    # A small library of its own compiles in a fraction of a second; the LIF kernel takes the same path.
    source = tmp_path / "answer.cpp"
    source.write_text('extern "C" int answer() { return 42; }\n')
    failing_compiler = tmp_path / "failing-cxx"  # same --version (so the same cache entry), but cannot compile
    failing_compiler.write_text('#!/bin/sh\n[ "$1" = --version ] && exec g++ --version\necho "disk full" >&2; exit 1\n')
    failing_compiler.chmod(0o755)
    code = (
        "import warnings\n"
        "from pathlib import Path\n"
        "from snn_lightning.native import load_library\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    library = load_library(Path({str(source)!r}), ('-shared', '-fPIC'), 'the answer', 'no answer')\n"
        "print(library.answer() if library else [str(w.message) for w in caught])\n"
    )

    def load(compiler: str = "g++") -> subprocess.CompletedProcess:
        env = {**os.environ, "SNN_LIGHTNING_CACHE": str(tmp_path / "cache"), "CXX": compiler}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)

    assert load().stdout.strip() == "42"
    (library,) = (tmp_path / "cache").glob("answer-*.so")
    size = library.stat().st_size
    library.write_bytes(library.read_bytes()[: size // 2])  # as a full disk or a killed copy leaves it
    rebuilt = load()
    assert rebuilt.returncode == 0, f"loading the truncated library ended with exit status {rebuilt.returncode}"
    assert rebuilt.stdout.strip() == "42" and library.stat().st_size == size
    assert f"rebuilding {library}: it has {size // 2} bytes" in rebuilt.stderr

    library.write_bytes(library.read_bytes()[: size // 2])
    refused = load(str(failing_compiler))
    assert refused.returncode == 0, f"loading the truncated library ended with exit status {refused.returncode}"
    assert f"the cached library {library} cannot be trusted" in refused.stdout
    assert f"delete {library} and {library.stem}.json beside it; until then no answer." in refused.stdout


# --- memory ----------------------------------------------------------------------------------------


def _train_step(model, x):
    logits = model(x)
    logits.square().mean().backward()
    return logits, [p.grad for p in model.parameters()]


def test_checkpoint_blocks_and_compact_spikes_keep_results_and_statistics():
    torch.manual_seed(5)
    plain = spiking_resnet_mini(10, in_channels=1, width_multiplier=0.5, time_steps=3)
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpoint_blocks = True
    compact = copy.deepcopy(plain)
    x = torch.rand(4, 1, 8, 8)
    logits, grads = _train_step(plain, x)
    for model in (checkpointed, compact):
        with compact_spikes() if model is compact else torch.enable_grad():
            other_logits, other_grads = _train_step(model, x)
        assert torch.equal(other_logits, logits)
        for grad, ref in zip(other_grads, grads):
            torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-6)
        for buffer, ref in zip(model.buffers(), plain.buffers()):
            assert torch.equal(buffer, ref)  # BN statistics counted the batch once


def test_compact_spikes_packs_views_of_spikes_as_bool_and_nothing_else():
    x = torch.randn(2, 3, 4) + 0.8
    with compact_spikes():
        spikes = LIF()(x)
        packed = saved_spikes._pack(spikes.flatten(0, 1)[1:])
        other = saved_spikes._pack(x)
    compact, dtype, *_ = packed
    assert compact.dtype == torch.bool and dtype == torch.float32
    assert torch.equal(saved_spikes._unpack(packed), spikes.flatten(0, 1)[1:])
    assert other is x
    with compact_spikes():  # channels-last spikes are packed too, keeping their strides
        spikes = LIF()(channels_last_steps(torch.randn(2, 3, 4, 5, 6) + 0.8))
        packed = saved_spikes._pack(spikes.flatten(0, 1))
    assert packed[0].dtype == torch.bool
    unpacked = saved_spikes._unpack(packed)
    assert torch.equal(unpacked, spikes.flatten(0, 1)) and unpacked.stride() == spikes.flatten(0, 1).stride()


# --- triton ----------------------------------------------------------------------------------------


@pytest.mark.skipif(TRITON_DEVICE is None, reason="Triton needs CUDA here; the interpreter subprocess test covers it")
@pytest.mark.parametrize("steps, v_reset, detach, decay, dtype", CASES, ids=CASE_IDS)
def test_triton_matches_reference(steps, v_reset, detach, decay, dtype):
    for surrogate in SURROGATES:
        compare_with_reference(triton_kernels(), steps, v_reset, detach, decay, surrogate, dtype, device=TRITON_DEVICE)


@pytest.mark.skipif(TRITON_DEVICE is None, reason="Triton needs CUDA here; the interpreter subprocess test covers it")
def test_triton_leaks_unknown_surrogate_and_float16():
    kernels = triton_kernels()
    for leak_shape in [(3, 1, 1), (3, 4, 5), (3, 1, 5)]:
        compare_with_reference(kernels, 4, 0.0, False, True, ATan(), torch.float32, TRITON_DEVICE, leak_shape)
        compare_with_reference(kernels, 3, None, False, False, Triangle(), torch.float32, TRITON_DEVICE, leak_shape)
    compare_with_reference(kernels, 4, -0.2, False, True, Quadratic(), torch.float32, TRITON_DEVICE)
    compare_with_reference(kernels, 4, 0.0, False, True, Sigmoid(), torch.float16, TRITON_DEVICE)
    x = torch.randn(4, 2, 8, device=TRITON_DEVICE) + 0.7
    assert torch.equal(LIF(backend="triton")(x), LIF(backend="reference")(x))
    reference, triton = adaptive_gradients("reference", TRITON_DEVICE), adaptive_gradients("triton", TRITON_DEVICE)
    assert torch.equal(triton[0], reference[0])
    for grad, ref in zip(triton[1:], reference[1:]):
        assert_grad_close(grad, ref, torch.float32, rtol32=1e-4)
    assert torch.equal(
        lif_multistep_backend(x, 0.5, LIFSettings(1.0, 0.0, True, False, ATan()), "triton"), LIF()(x.cpu()).to(x.device)
    )


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.skipif(TRITON_DEVICE is not None, reason="the Triton tests run in this process")
def test_triton_kernels_in_interpreter_subprocess():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        __file__,
        "-k",
        "test_triton_ and not subprocess",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_classifier_memory_options_train_like_the_plain_model():
    torch.manual_seed(7)
    plain = SNNClassifier("resnet_mini", num_classes=10, in_channels=1, time_steps=2, width_multiplier=0.25)
    frugal = SNNClassifier(
        "resnet_mini",
        num_classes=10,
        in_channels=1,
        time_steps=2,
        width_multiplier=0.25,
        checkpoint_blocks=True,
        compact_spikes=True,
    )
    frugal.load_state_dict(plain.state_dict())
    assert frugal.network.checkpoint_blocks and frugal.compact_spikes
    x = torch.rand(3, 1, 8, 8)
    logits, grads = _train_step(plain, x)
    frugal_logits, frugal_grads = _train_step(frugal, x)
    assert torch.equal(frugal_logits, logits)
    for grad, ref in zip(frugal_grads, grads):
        torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-6)
