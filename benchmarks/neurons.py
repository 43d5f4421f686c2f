"""Speed of one multi-step LIF layer, forward + backward, against SpikingJelly and snnTorch.

    python benchmarks/neurons.py                      # CPU, float32, T = 4 and 8, 8 Mi neurons per step
    python benchmarks/neurons.py --device cuda --dtype bfloat16
    python benchmarks/neurons.py --elements 1048576   # smaller, for a quick look
    python benchmarks/neurons.py --threads 1 --clock cpu   # per-core cost, robust when other jobs share the CPU
    python benchmarks/neurons.py --smoke              # seconds: T = 4, 4 Ki neurons, 1 repeat (the suite runs it)

Every row runs the same input ``[T, N]`` (tau = 2, hard reset to 0, threshold 1, ATan surrogate)
forward and backward with a fixed upstream gradient; the time is the median of ``--repeats``
runs after one warm-up. The memory bound is measured in the same run: a copy of ``T*N`` float32
into an existing buffer gives the bandwidth, and a fused forward + backward must move at least
24 bytes per element in float32 (forward reads X and writes S and H, backward reads dL/dS and H
and writes dL/dX; H stays float32, so 16 bytes in bfloat16). Install the anchors with
``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch

from snn_lightning.neurons import LIF, ATan


def fused_bytes_per_element(dtype: torch.dtype) -> int:
    """Return the bytes a fused forward + backward must move per element: X, S, dS, dX in ``dtype``, H (float32) twice."""
    return 4 * torch.empty((), dtype=dtype).element_size() + 2 * 4


def timed(run: Callable[[], object], device: torch.device, repeats: int, clock: Callable[[], float]) -> float:
    """Return the median time of ``run()`` in seconds on ``clock``, after one warm-up call."""

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return clock() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def forward_backward(
    layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grad: torch.Tensor
) -> Callable[[], None]:
    """Return a closure that runs the layer on ``x`` and back-propagates ``grad``."""

    def run() -> None:
        layer(x).backward(grad)
        x.grad = None

    return run


def spikingjelly_layer() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Return SpikingJelly's multi-step LIFNode (reset before every call), or None if it is not installed."""
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError:
        return None
    node = neuron.LIFNode(tau=2.0, v_reset=0.0, surrogate_function=surrogate.ATan(), step_mode="m")

    def run(x: torch.Tensor) -> torch.Tensor:
        node.reset()
        return node(x)

    return run


def snntorch_layer() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Return snnTorch's Leaky neuron stepped in a Python loop over T, or None if it is not installed."""
    try:
        import snntorch
    except ImportError:
        return None
    leaky = snntorch.Leaky(beta=0.5, threshold=1.0, spike_grad=snntorch.surrogate.atan(), reset_mechanism="zero")

    def run(x: torch.Tensor) -> torch.Tensor:
        membrane = torch.zeros_like(x[0])
        spikes = []
        for current in x:
            spike, membrane = leaky(current, membrane)
            spikes.append(spike)
        return torch.stack(spikes)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--elements", type=int, default=8 * 2**20, help="neurons per time step N")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8], help="time steps T to measure")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for every row")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall time, or this process's CPU time (with --threads 1: unaffected by other jobs)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="T = 4, 4,096 neurons, 1 repeat: checks the script runs in seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.elements, args.steps, args.repeats = 4096, [4], 1
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    ours = ["reference", "fused"] + (["triton"] if device.type == "cuda" else [])
    layers: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
        f"ours ({backend})": LIF(tau=2.0, surrogate=ATan(), backend=backend) for backend in ours
    }
    layers["SpikingJelly LIFNode(step_mode='m')"] = spikingjelly_layer()
    layers["snnTorch Leaky (loop over T)"] = snntorch_layer()

    print(
        f"# LIF forward+backward, {args.dtype} on {device} ({torch.get_num_threads()} threads), "
        f"N = {args.elements:,} neurons per step, median {args.clock} time of {args.repeats}"
    )
    print(f"| {'implementation':<36} | T | ms | G elements/s | vs SpikingJelly | vs snnTorch | of memory bound |")
    print("|---|---|---|---|---|---|---|")
    bytes_per_element = fused_bytes_per_element(dtype)
    for steps in args.steps:
        torch.manual_seed(0)
        x = (torch.randn(steps, args.elements, device=device) + 0.5).to(dtype)
        grad = torch.randn_like(x)
        elements = steps * args.elements
        target = torch.empty_like(x, dtype=torch.float32)
        source = x.float()
        copy_seconds = timed(functools.partial(target.copy_, source), device, args.repeats, clock)
        bandwidth = 2 * 4 * elements / copy_seconds
        bound = bandwidth / bytes_per_element
        del target, source
        x.requires_grad_(True)
        rates: dict[str, float] = {}
        for name, layer in layers.items():
            if layer is None:
                continue
            rates[name] = elements / timed(forward_backward(layer, x, grad), device, args.repeats, clock)
        sj = rates.get("SpikingJelly LIFNode(step_mode='m')")
        st = rates.get("snnTorch Leaky (loop over T)")
        for name, layer in layers.items():
            if layer is None:
                print(f"| {name:<36} | {steps} | not installed (pip install -e .[bench]) | | | | |")
                continue
            rate = rates[name]
            vs_sj = f"{rate / sj:.2f}×" if sj else "–"
            vs_st = f"{rate / st:.2f}×" if st else "–"
            print(
                f"| {name:<36} | {steps} | {elements / rate * 1e3:.0f} | {rate / 1e9:.3f} | {vs_sj} | {vs_st} | "
                f"{rate / bound:.0%} |"
            )
        print(
            f"| copy {bandwidth / 1e9:.1f} GB/s → bound at {bytes_per_element} B/element | {steps} | "
            f"{copy_seconds * 1e3:.0f} | {bound / 1e9:.3f} | | | 100% |"
        )


if __name__ == "__main__":
    main()
