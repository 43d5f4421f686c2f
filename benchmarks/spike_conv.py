"""Spike-driven convolution (SpikeConv2d) against nn.Conv2d on the CPU, by layer shape and spike density.

    python benchmarks/spike_conv.py                        # ResNet-19 ×0.5 layer shapes, T·B = 64, 1 thread
    python benchmarks/spike_conv.py --threads 2 --densities 0.02 0.1 0.2 0.3
    python benchmarks/spike_conv.py --smoke                # seconds: batch 2, density 0.1, 1 repeat (the suite runs it)

Input: binary spikes with the given fraction of ones, channels-last (as a spiking layer emits
them). Times are the median CPU time of ``--repeats`` calls after one warm-up: forward, and
forward + backward (input and weight gradients). The ratio is nn.Conv2d's time over ours (> 1:
ours is faster); it sets SpikeConv2d's default ``max_density`` (above it the layer runs dense).
"""

import argparse
import statistics
import time

import torch
from torch import nn

from snn_lightning.layers import SpikeConv2d

# (in channels, out channels, input side, stride) of the 3×3 convolutions of ResNet-19 ×0.5 on 32×32.
SHAPES = [(64, 64, 32, 1), (64, 128, 32, 2), (128, 128, 16, 1), (128, 256, 16, 2), (256, 256, 8, 1)]


def seconds(run, repeats: int) -> float:
    """Return the median CPU time of ``run()`` over ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(conv: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Return (forward, forward + backward) seconds of ``conv`` on ``x``."""
    x = x.detach().requires_grad_()

    def forward() -> None:
        with torch.no_grad():
            conv(x)

    def training() -> None:
        conv.zero_grad(set_to_none=True)
        conv(x).sum().backward()

    return seconds(forward, repeats), seconds(training, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="images per call (T × B of the network)")
    parser.add_argument(
        "--densities", type=float, nargs="+", default=[0.05, 0.15, 0.25, 0.35], help="fractions of ones"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median reported)")
    parser.add_argument(
        "--smoke", action="store_true", help="batch 2, density 0.1, 1 repeat: checks the script runs in seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.densities, args.repeats = 2, [0.1], 1
    torch.set_num_threads(args.threads)
    print(
        f"# 3×3 conv, batch {args.batch}, {args.threads} thread(s), median CPU ms of {args.repeats}; "
        f"(×) = nn.Conv2d time / SpikeConv2d time"
    )
    print(
        "| in→out, side, stride | density | nn.Conv2d fwd | SpikeConv2d fwd | nn.Conv2d fwd+bwd | SpikeConv2d fwd+bwd |"
    )
    print("|---|---|---|---|---|---|")
    for c_in, c_out, side, stride in SHAPES:
        torch.manual_seed(0)
        ours = SpikeConv2d(c_in, c_out, 3, stride, 1, bias=False, max_density=1.0)
        dense = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False).to(memory_format=torch.channels_last)
        dense.load_state_dict(ours.state_dict())
        for density in args.densities:
            spikes = (torch.rand(args.batch, c_in, side, side) < density).float()
            spikes = spikes.contiguous(memory_format=torch.channels_last)
            dense_fwd, dense_train = measure(dense, spikes, args.repeats)
            ours_fwd, ours_train = measure(ours, spikes, args.repeats)
            print(
                f"| {c_in}→{c_out}, {side}, {stride} | {density:.2f} | {1e3 * dense_fwd:.1f} | "
                f"{1e3 * ours_fwd:.1f} ({dense_fwd / ours_fwd:.2f}×) | {1e3 * dense_train:.1f} | "
                f"{1e3 * ours_train:.1f} ({dense_train / ours_train:.2f}×) |"
            )


if __name__ == "__main__":
    main()
