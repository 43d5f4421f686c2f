"""Speed and peak memory of a spiking ResNet-19 training step: ours against the same network in SpikingJelly.

    python benchmarks/train_step.py                          # CPU, width ×0.5, T = 4, batch 16, 32×32
    python benchmarks/train_step.py --device cuda --width 1.0 --batch-size 64
    python benchmarks/train_step.py --threads 1 --clock cpu   # per-core cost, robust when other jobs share the CPU
    python benchmarks/train_step.py --smoke                   # width ×1/16, batch 2, 1 step, under a minute (the suite runs it)

Every configuration runs in its own process, so its memory is its own. Memory columns: peak
resident set size (``getrusage``) and its growth over the process right before training (torch,
the model and the data); the peak of allocated memory within one step above its start, checked
after every op (glibc's ``mallinfo2`` on the CPU, the caching allocator's peak on CUDA); and what
the forward pass leaves allocated when it returns, i.e. what autograd keeps for backward. RSS
also counts freed memory the allocator has not returned to the system, so it moves less than the
allocated columns. A step is forward, mean-over-T cross-entropy, backward and an SGD update; the
speed is the median over ``--steps`` steps after one warm-up step. Install the anchor with
``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from snn_lightning.models import spiking_resnet19
from snn_lightning.neurons import LIF, ATan
from snn_lightning.neurons.kernels import compact_spikes

# name -> (builder arguments for ours, or None for SpikingJelly; run the step inside compact_spikes).
# Options other than "backend" go to spiking_resnet19; spike_conv_max_density 0 makes every SpikeConv2d run dense.
CONFIGURATIONS: dict[str, tuple[dict | None, bool]] = {
    "ours, reference backend": ({"backend": "reference"}, False),
    "ours, fused, dense convolutions": ({"backend": "auto", "spike_conv_max_density": 0.0}, False),
    "ours, fused": ({"backend": "auto"}, False),
    "ours, fused + bool spikes": ({"backend": "auto"}, True),
    "ours, fused + checkpoint_blocks": ({"backend": "auto", "checkpoint_blocks": True}, False),
    "ours, fused + both": ({"backend": "auto", "checkpoint_blocks": True}, True),
    "SpikingJelly layers (LIFNode step_mode='m')": (None, False),
}
ANCHOR = "SpikingJelly layers (LIFNode step_mode='m')"
NOT_INSTALLED = "not installed (pip install -e .[bench])"


def spikingjelly_resnet19(num_classes: int, time_steps: int, width: float) -> nn.Module:
    """Return our ResNet-19 (conv3×3 stem, stages 3/3/2, residual added to the current) built from SpikingJelly layers."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=2.0, v_reset=0.0, surrogate_function=surrogate.ATan(), step_mode="m")

    def conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
        conv = layer.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False, step_mode="m")
        return nn.Sequential(conv, layer.BatchNorm2d(c_out, step_mode="m"))

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.branch1, self.neuron1 = conv_bn(c_in, c_out, stride), lif()
            self.branch2, self.neuron2 = conv_bn(c_out, c_out), lif()
            self.shortcut = conv_bn(c_in, c_out, stride, 1) if stride != 1 or c_in != c_out else nn.Identity()

        def forward(self, x: Tensor) -> Tensor:
            return self.neuron2(self.branch2(self.neuron1(self.branch1(x))) + self.shortcut(x))

    class Network(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [max(1, round(w * width)) for w in (128, 256, 512)]
            self.stem = nn.Sequential(conv_bn(3, widths[0]), lif())
            blocks, channels = [], widths[0]
            for count, c_out, stride in zip((3, 3, 2), widths, (1, 2, 2)):
                for index in range(count):
                    blocks.append(Block(channels, c_out, stride if index == 0 else 1))
                    channels = c_out
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(channels, num_classes)

        def forward(self, images: Tensor) -> Tensor:
            functional.reset_net(self)
            x = images.unsqueeze(0).repeat(time_steps, 1, 1, 1, 1)
            return self.fc(self.blocks(self.stem(x)).mean(dim=(-2, -1)))

    return Network()


def build(name: str, args: argparse.Namespace) -> nn.Module:
    """Return the network of configuration ``name``."""
    options = CONFIGURATIONS[name][0]
    if options is None:
        return spikingjelly_resnet19(args.num_classes, args.time_steps, args.width)
    model_options = {key: value for key, value in options.items() if key != "backend"}
    neuron = LIF(tau=2.0, surrogate=ATan(), backend=options["backend"])
    return spiking_resnet19(
        args.num_classes, time_steps=args.time_steps, width_multiplier=args.width, neuron=neuron, **model_options
    )


def neuron_type(name: str) -> type:
    """Return the class of the spiking neurons in the network of configuration ``name``."""
    if CONFIGURATIONS[name][0] is None:
        from spikingjelly.activation_based.neuron import LIFNode

        return LIFNode
    return LIF


def spike_rate(model: nn.Module, images: Tensor, neuron: type) -> float:
    """Return the fraction of ones over every output of a ``neuron`` module in one forward pass of ``model``."""
    ones, total = [], []

    def count(module: nn.Module, args: tuple, spikes: Tensor) -> None:
        ones.append(spikes.count_nonzero().item())
        total.append(spikes.numel())

    handles = [module.register_forward_hook(count) for module in model.modules() if isinstance(module, neuron)]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return sum(ones) / sum(total)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def allocated_mb(device: torch.device) -> float:
    """Return the memory currently allocated by this process's tensors in MB (heap + mmap blocks of glibc on the CPU)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakAllocated(TorchDispatchMode):
    """Track the largest memory allocation level seen after any op run inside it (forward, backward, update)."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.peak_mb = allocated_mb(device)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak_mb = max(self.peak_mb, allocated_mb(self.device))
        return out


def measure(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Run the training steps of configuration ``name`` in this process; return speed and memory."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.manual_seed(0)
    model = build(name, args).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images = torch.rand(args.batch_size, 3, 32, 32, device=device)
    labels = torch.randint(args.num_classes, (args.batch_size,), device=device)
    use_compact = CONFIGURATIONS[name][1]
    kept_mb = []

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        before = allocated_mb(device)
        with compact_spikes() if use_compact else torch.enable_grad():
            logits = model(images)
        kept_mb.append(allocated_mb(device) - before)
        nn.functional.cross_entropy(logits.mean(0), labels).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return clock() - start

    rss_before = peak_rss_mb()
    step()
    seconds = statistics.median(step() for _ in range(args.steps))
    result = {"images_per_s": args.batch_size / seconds, "peak_rss_mb": peak_rss_mb(), "kept_mb": kept_mb[-1]}
    result["spike_rate"] = spike_rate(model, images, neuron_type(name))
    result["rss_growth_mb"] = result["peak_rss_mb"] - rss_before
    # One more step, untimed, with every op watched: its peak allocation above the level it started from.
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakAllocated(device) as watch:
        start_mb = allocated_mb(device)
        step()
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else watch.peak_mb
    result["step_peak_mb"] = peak_mb - start_mb
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--width", type=float, default=0.5, help="width multiplier of ResNet-19 (1.0 = 128/256/512)")
    parser.add_argument("--time-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall time, or the process's CPU time (with --threads 1: unaffected by other jobs)",
    )
    parser.add_argument("--only", choices=list(CONFIGURATIONS), help=argparse.SUPPRESS)  # one configuration, in a child
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="width ×1/16, batch 2, 1 step: checks the script runs (each configuration is a process start)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.width, args.batch_size, args.steps = 1 / 16, 2, 1
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return

    results: dict[str, dict[str, float] | str] = {}
    for name in CONFIGURATIONS:
        if CONFIGURATIONS[name][0] is None and importlib.util.find_spec("spikingjelly") is None:
            results[name] = NOT_INSTALLED
            continue
        command = [sys.executable, __file__, *sys.argv[1:], "--only", name]
        child = subprocess.run(command, capture_output=True, text=True)
        lines = child.stdout.strip().splitlines()
        results[name] = (
            json.loads(lines[-1])
            if child.returncode == 0 and lines
            else (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        )
    anchor = results.get(ANCHOR)

    def cell(result: dict[str, float], key: str, digits: int = 0) -> str:
        text = f"{result[key]:.{digits}f}"
        return text + (f" ({result[key] / anchor[key]:.2f}×)" if isinstance(anchor, dict) else "")

    print(
        f"# spiking ResNet-19 ×{args.width} train step, T={args.time_steps}, batch {args.batch_size}, 32×32, "
        f"{args.device} ({args.threads} threads), median {args.clock} time of {args.steps} steps; (×) = vs SpikingJelly"
    )
    print(
        "| configuration | images/s | peak RSS MB | RSS growth in training MB | step peak allocated MB | "
        "kept for backward MB | spike rate |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, result in results.items():
        if isinstance(result, str):
            print(f"| {name} | {result if result == NOT_INSTALLED else f'failed: {result}'} | | | | | |")
            continue
        cells = [
            cell(result, key, digits)
            for key, digits in (
                ("images_per_s", 2),
                ("peak_rss_mb", 0),
                ("rss_growth_mb", 0),
                ("step_peak_mb", 0),
                ("kept_mb", 0),
            )
        ]
        print(f"| {name} | " + " | ".join(cells) + f" | {result['spike_rate']:.3f} |")
    failed = [name for name, result in results.items() if isinstance(result, str) and result != NOT_INSTALLED]
    if failed:
        raise SystemExit(f"{len(failed)} configuration(s) failed: {', '.join(failed)} (their errors are in the table)")


if __name__ == "__main__":
    main()
