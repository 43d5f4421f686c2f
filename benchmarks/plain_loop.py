"""The bar: a hand-written spiking CNN in plain PyTorch (no snn_lightning), and its training speed against ``snn-lightning fit``.

The plain script is what a researcher writes in an afternoon: LIF neurons (τ=2, hard reset to 0,
ATan surrogate) stepped by a Python loop over T, direct encoding, Adam with one-cycle, horizontal
flips on the batch, data held as one tensor. ``compare`` trains the same network (``convnet2``:
conv 32 and 64 + BN + LIF with 2×2 max-pooling, FC 256 + LIF, FC 10; or ``plif_net``: conv 128, 128,
FC 2048 with PLIF neurons and dropout) for the same number of steps with (a) this loop and (b)
``snn-lightning fit`` with its defaults on ``configs/quickstart_fashion.yaml``, each in a process
of its own, and prints images/s over the timed steps (the first ``--skip`` steps warm up), peak
resident memory and the ratio.

    python benchmarks/plain_loop.py compare                  # both networks, real Fashion-MNIST
    python benchmarks/plain_loop.py train --epochs 2         # the plain script's own accuracy (88 % / 90.5 %)
    python benchmarks/plain_loop.py compare --smoke --root DIR   # seconds: a few steps (the suite runs it on small IDX files)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
ROOT = "/usr/share/datasets/fashion-mnist"
NETWORKS = {"convnet2": ((32, 64), 256, False, 0.0), "plif_net": ((128, 128), 2048, True, 0.5)}


def read_idx(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return normalised images [N, 1, 28, 28] and labels [N] of the train or t10k split."""
    with gzip.open(f"{root}/{split}-images-idx3-ubyte.gz") as file:
        images = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(f"{root}/{split}-labels-idx1-ubyte.gz") as file:
        labels = np.frombuffer(file.read(), np.uint8, offset=8)
    return (torch.tensor(images, dtype=torch.float32) / 255 - 0.2860) / 0.3530, torch.tensor(labels, dtype=torch.long)


class SpikeATan(torch.autograd.Function):
    """Heaviside forward, ATan surrogate (α=2) backward."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v >= 0).float()

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad / (1 + (torch.pi * v) ** 2)


class LIFLoop(nn.Module):
    """LIF over [T, B, ...] by a Python loop: v += (x - v) / τ, spike at v ≥ 1, hard reset to 0; PLIF learns τ."""

    def __init__(self, learnable: bool) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.0)) if learnable else None  # 1/τ = sigmoid(w) = 0.5

    def forward(self, x):
        inv_tau = torch.sigmoid(self.w) if self.w is not None else 0.5
        v, spikes = torch.zeros_like(x[0]), []
        for step in x:
            v = v + (step - v) * inv_tau
            spike = SpikeATan.apply(v - 1.0)
            v = v * (1 - spike)
            spikes.append(spike)
        return torch.stack(spikes)


class PlainSpikingCNN(nn.Module):
    """conv-BN-LIF-pool ×2, [dropout], FC-LIF, [dropout], FC; BN over T·B; logits [T, B, 10]."""

    def __init__(self, widths: tuple[int, int], hidden: int, plif: bool, dropout: float, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.conv1, self.bn1 = nn.Conv2d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0])
        self.conv2, self.bn2 = nn.Conv2d(widths[0], widths[1], 3, padding=1, bias=False), nn.BatchNorm2d(widths[1])
        self.lif1, self.lif2, self.lif3 = LIFLoop(plif), LIFLoop(plif), LIFLoop(plif)
        self.fc1, self.fc2 = nn.Linear(widths[1] * 49, hidden), nn.Linear(hidden, 10)
        self.dropout = dropout

    def drop(self, x):  # one mask per sample, shared by every step
        if not self.training or self.dropout == 0:
            return x
        return x * torch.empty_like(x[0]).bernoulli_(1 - self.dropout) / (1 - self.dropout)

    def forward(self, images):
        t, b = self.steps, images.shape[0]
        x = images.unsqueeze(0).expand(t, *images.shape).flatten(0, 1)
        x = self.lif1(self.bn1(self.conv1(x)).unflatten(0, (t, b))).flatten(0, 1)
        x = nn.functional.max_pool2d(x, 2)
        x = self.lif2(self.bn2(self.conv2(x)).unflatten(0, (t, b))).flatten(0, 1)
        x = nn.functional.max_pool2d(x, 2).flatten(1).unflatten(0, (t, b))
        return self.fc2(self.drop(self.lif3(self.fc1(self.drop(x)))))


def train_plain(args: argparse.Namespace) -> dict:
    """Train the plain network; return images/s over the timed steps, and the test accuracy when whole epochs ran."""
    torch.manual_seed(args.seed)
    images, labels = read_idx(args.root, "train")
    model = PlainSpikingCNN(*NETWORKS[args.network], steps=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps_per_epoch = len(labels) // args.batch_size
    total = args.steps or args.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=total)
    step, start = 0, None
    while step < total:
        order = torch.randperm(len(labels))
        for index in range(steps_per_epoch):
            if step == args.skip:
                start = time.perf_counter()
            batch = order[index * args.batch_size : (index + 1) * args.batch_size]
            x, y = images[batch], labels[batch]
            flip = torch.rand(len(y)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = nn.functional.cross_entropy(model(x).mean(0), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step == total:
                break
    result = {"images_per_s": (total - args.skip) * args.batch_size / (time.perf_counter() - start)}
    if not args.steps:
        test_images, test_labels = read_idx(args.root, "t10k")
        model.eval()
        with torch.no_grad():
            predictions = torch.cat([model(chunk).mean(0).argmax(-1) for chunk in test_images.split(500)])
        result["test_acc"] = (predictions == test_labels).float().mean().item()
    return result


def run_measured(command: list[str], env: dict[str, str]) -> tuple[dict, float]:
    """Run ``command``; return the JSON it writes to ``$RESULT_PATH`` and its peak resident memory in MiB."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**env, "RESULT_PATH": f"{folder}/result.json"}
        process = subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{process.stderr.read().decode()[-3000:]}")
        return json.loads(Path(f"{folder}/result.json").read_text()), usage.ru_maxrss / 1024


def compare(args: argparse.Namespace) -> None:
    """Train each network for the same steps with the plain loop and with ``snn-lightning fit``; print speeds and ratios."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(Path(__file__).parent)}
    args.root = str(Path(args.root).resolve())  # both runs start in a folder of their own
    print(
        f"{args.steps} steps of batch {args.batch_size} ({args.skip} warm-up steps untimed), {torch.get_num_threads()} threads"
    )
    print(
        "| network | plain loop images/s | snn-lightning images/s | ratio | plain peak MiB | snn-lightning peak MiB |"
    )
    print("|---|---|---|---|---|---|")
    for network in args.networks:
        steps = args.steps if network == "convnet2" else max(args.skip + 2, args.steps // 4)
        own = [sys.executable, __file__, "train", "--network", network, "--steps", str(steps), "--skip", str(args.skip)]
        own += ["--root", args.root, "--batch-size", str(args.batch_size), "--write-result"]
        plain, plain_memory = run_measured(own, env)
        fit = [
            str(Path(sys.executable).with_name("snn-lightning")),
            "fit",
            "--config",
            str(REPO / "configs/quickstart_fashion.yaml"),
        ]
        fit += ["--data.root", args.root, "--data.batch_size", str(args.batch_size), "--trainer.max_steps", str(steps)]
        fit += ["--trainer.limit_val_batches", "0", "--model.arch", network, "--trainer.default_root_dir", "runs"]
        fit += ["--trainer.logger.init_args.save_dir", "runs"]
        fit += ["--trainer.callbacks+=step_timer.StepTimer", "--trainer.callbacks.skip", str(args.skip)]
        if network == "plif_net":
            fit += ["--model.neuron", "snn_lightning.neurons.PLIF"]
        framework, framework_memory = run_measured(fit, env)
        ratio = framework["images_per_s"] / plain["images_per_s"]
        print(
            f"| {network} | {plain['images_per_s']:.0f} | {framework['images_per_s']:.0f} | {ratio:.2f}× | "
            f"{plain_memory:.0f} | {framework_memory:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "compare"])
    parser.add_argument("--root", default=ROOT, help="folder of the four Fashion-MNIST IDX files")
    parser.add_argument("--network", choices=list(NETWORKS), default="convnet2", help="train: the network")
    parser.add_argument(
        "--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS), help="compare: networks"
    )
    parser.add_argument("--epochs", type=int, default=2, help="train: epochs when --steps is 0")
    parser.add_argument(
        "--steps", type=int, default=0, help="optimizer steps (compare: of convnet2; plif_net gets a quarter)"
    )
    parser.add_argument("--skip", type=int, default=10, help="warm-up steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-result", action="store_true", help="train: also write the result to $RESULT_PATH")
    parser.add_argument(
        "--smoke", action="store_true", help="compare: 6 steps of batch 16 on convnet2, to check the script runs"
    )
    args = parser.parse_args()
    if args.command == "train":
        result = train_plain(args)
        print(json.dumps(result))
        if args.write_result:
            Path(os.environ["RESULT_PATH"]).write_text(json.dumps(result))
        return
    if args.smoke:
        args.steps, args.skip, args.batch_size, args.networks = 6, 2, 16, ["convnet2"]
    args.steps = args.steps or 150
    compare(args)


if __name__ == "__main__":
    main()
