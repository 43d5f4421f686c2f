"""Knowledge distillation on the embedded digits: CE only vs classical KD vs TSER vs TSER without entropy.

A measurement, not a test. A deliberately small spiking student (``resnet_mini`` at width 0.5,
T=4, LIF; AdamW lr 1e-2 with cosine, batch 64) trains for three epochs, an early-training
regime where a few minutes of CPU separate the methods; every method runs with the same seeds
(same initialisation and batch order), and the table gives the mean ± std of the test accuracy
of the final model (test split of 359 digits, never trained on). Train the teacher once first
(step 1 of the quickstart):

    snn-lightning fit --config configs/quickstart_kd_teacher.yaml
    python benchmarks/kd_digits.py                      # --epochs 3 --seeds 0 1 2 --teacher …
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import lightning as L
import torch

from snn_lightning.data import StaticImageDataModule
from snn_lightning.distill import TSERKD, ClassicalKD, KDCallback, load_teacher
from snn_lightning.modules import DistillationModule

# Each method's KD callbacks, with the framework's defaults tau = 4, alpha = 0.5, lambda = 0.01.
METHODS: dict[str, Callable[[], list[KDCallback]]] = {
    "CE only": lambda: [],
    "classical KD": lambda: [ClassicalKD()],
    "TSER": lambda: [TSERKD()],
    "TSER, λ = 0": lambda: [TSERKD(entropy_weight=0.0)],
}


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--teacher",
        default="logs/quickstart_kd_teacher/checkpoints/best.ckpt",
        help="checkpoint of the ANN ResNet-18 teacher (CIFAR stem) from configs/quickstart_kd_teacher.yaml",
    )
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of every student")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds; every method runs with each")
    parser.add_argument("--width", type=float, default=0.5, help="width multiplier of the student (1.0: 32/64 channels)")
    parser.add_argument("--time-steps", type=int, default=4, help="time steps T of the student")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    parser.add_argument("--lr", type=float, default=1e-2, help="AdamW learning rate (cosine annealing over the epochs)")
    return parser.parse_args()


def digits(args: argparse.Namespace) -> StaticImageDataModule:
    """Return the digits data module; validation is off, the test split measures."""
    return StaticImageDataModule(
        dataset="digits", batch_size=args.batch_size, time_steps=args.time_steps, val_fraction=0.0
    )


def teacher_accuracy(args: argparse.Namespace) -> float:
    """Return the teacher's accuracy on the test split."""
    teacher = load_teacher(args.teacher, "resnet18", num_classes=10, in_channels=1, stem="cifar")
    data = digits(args)
    data.setup("test")
    correct = sum((teacher(images).argmax(-1) == targets).sum().item() for images, targets in data.test_dataloader())
    return correct / len(data.test_set)


def student_accuracy(method: str, seed: int, args: argparse.Namespace) -> float:
    """Train one student with ``method`` from ``seed``; return its test accuracy after the last epoch."""
    L.seed_everything(seed, verbose=False)
    model = DistillationModule(
        teacher_checkpoint=args.teacher,
        teacher_arch="resnet18",
        arch="resnet_mini",
        num_classes=10,
        in_channels=1,
        time_steps=args.time_steps,
        width_multiplier=args.width,
        optimizer=lambda parameters: torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01),
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        callbacks=METHODS[method](),
        accelerator="cpu",
        devices=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = digits(args)
    trainer.fit(model, datamodule=data)
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    return metrics["test/acc"]


def main() -> None:
    """Run every method with every seed and print the table."""
    args = parse_args()
    start = time.perf_counter()
    print(f"teacher (ANN ResNet-18) test accuracy: {teacher_accuracy(args):.4f}", flush=True)
    rows = []
    for method in METHODS:
        accuracies = []
        for seed in args.seeds:
            accuracies.append(student_accuracy(method, seed, args))
            elapsed = time.perf_counter() - start
            print(f"{method:>14} seed {seed}: test/acc {accuracies[-1]:.4f}  ({elapsed:.0f} s)", flush=True)
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        rows.append((method, statistics.mean(accuracies), spread, accuracies))
    print(
        f"\nstudent resnet_mini width {args.width}, T={args.time_steps}, {args.epochs} epochs, batch {args.batch_size}, "
        f"AdamW lr {args.lr}, seeds {' '.join(map(str, args.seeds))}; tau 4, alpha 0.5, lambda 0.01; {time.perf_counter() - start:.0f} s in all\n"
    )
    print("| method | test acc (mean ± std) | per seed |")
    print("|---|---|---|")
    for method, mean, spread, accuracies in rows:
        print(f"| {method} | {100 * mean:.2f} ± {100 * spread:.2f} % | {' '.join(f'{100 * a:.1f}' for a in accuracies)} |")


if __name__ == "__main__":
    main()
