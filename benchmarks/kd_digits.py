"""Knowledge distillation on the embedded digits, as per-epoch test-accuracy curves up to convergence.

A measurement, not a test. A small spiking student (``resnet_mini`` at width 0.5, T=4, LIF, batch 64,
cosine annealing over ``--epochs``) trains with CE of the time-mean logits, per-step CE (the
baseline of TSER's per-step CE term), classical KD, TSER, TSER with λ = 0, and a control: classical
KD towards label-only targets (logits ``m·onehot(y)`` with ``m`` the teacher's mean top-1 margin,
so the same temperature and loss scale but no teacher knowledge), and classical KD and TSER with
logit standardization (``standardize: true``, τ = 2). Every method runs with the same
seeds (same initialisation and batch order); the test split (359 digits, never trained on) is
scored after every epoch, and the table gives mean ± std at chosen epochs.

Why curves: KD towards the teacher's logits at τ = 4 fits this student slowly early on, so a short
budget measures fitting speed, not what the teacher teaches (README, "Why distillation lost on the digits").
``--optimizer`` chooses AdamW (lr 1e-2) or SGD (lr 0.1, momentum 0.9), which scale the τ²-weighted
KD gradient differently. Train the teacher once first:

    snn-lightning fit --config configs/quickstart_kd_teacher.yaml
    python benchmarks/kd_digits.py                      # --optimizer adamw --epochs 15 --seeds 0 1 2
    python benchmarks/kd_digits.py --optimizer sgd
    python benchmarks/kd_digits.py --smoke              # seconds: an untrained teacher, 2 methods, 2 batches (the suite runs it)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn_lightning.callbacks.safety import EpochSeed
from snn_lightning.data import StaticImageDataModule
from snn_lightning.distill import TSERKD, ClassicalKD, DistillationOutputs, KDCallback, load_teacher
from snn_lightning.modules import ANNClassifier, DistillationModule

TEACHER = "logs/quickstart_kd_teacher/latest/checkpoints/best.ckpt"


class LabelTargetKD(ClassicalKD):
    """Control: classical KD whose teacher logits are ``margin·onehot(y)``, the temperature without the knowledge."""

    def __init__(self, margin: float) -> None:
        """
        Args:
            margin: logit of the true class in the targets; the other classes get 0.
        """
        super().__init__()
        self.margin = margin

    def loss_terms(self, outputs: DistillationOutputs, parts: nn.Module | None) -> dict[str, Tensor]:
        targets = self.margin * F.one_hot(outputs.targets, outputs.teacher_logits.shape[-1]).to(outputs.teacher_logits)
        return super().loss_terms(dataclasses.replace(outputs, teacher_logits=targets), parts)


# Each method's loss: the student's own (``mean_ce`` / ``per_step_ce``) and its KD callbacks at the
# framework's defaults tau = 4, alpha = 0.5, lambda = 0.01; the control gets the teacher's margin.
METHODS: dict[str, tuple[str, Callable[[float], list[KDCallback]]]] = {
    "CE": ("mean_ce", lambda margin: []),
    "per-step CE": ("per_step_ce", lambda margin: []),
    "classical KD": ("mean_ce", lambda margin: [ClassicalKD()]),
    "TSER": ("mean_ce", lambda margin: [TSERKD()]),
    "TSER, λ = 0": ("mean_ce", lambda margin: [TSERKD(entropy_weight=0.0)]),
    "KD, label targets": ("mean_ce", lambda margin: [LabelTargetKD(margin)]),
    # Logit standardization (Sun et al., CVPR 2024) at their base temperature 2.
    "classical KD, standardized": ("mean_ce", lambda margin: [ClassicalKD(tau=2.0, standardize=True)]),
    "TSER, standardized": ("mean_ce", lambda margin: [TSERKD(tau=2.0, standardize=True)]),
}
OPTIMIZERS = {
    "adamw": (1e-2, lambda lr: lambda parameters: torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)),
    "sgd": (0.1, lambda lr: lambda parameters: torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=5e-4)),
}


class TestCurve(L.Callback):
    """Score the test split after every training epoch; ``accuracies`` holds one value per epoch."""

    def __init__(self, data: StaticImageDataModule) -> None:
        self.data = data
        self.accuracies: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.eval()
        with torch.no_grad():
            correct = sum(
                (pl_module(images).mean(0).argmax(-1) == targets).sum().item()
                for images, targets in self.data.test_dataloader()
            )
        self.accuracies.append(correct / len(self.data.test_set))
        pl_module.train()


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--teacher",
        default=TEACHER,
        help="checkpoint of the ANN ResNet-18 teacher from configs/quickstart_kd_teacher.yaml",
    )
    parser.add_argument("--teacher-width", type=float, default=1.0, help="width multiplier of the teacher in --teacher")
    parser.add_argument(
        "--epochs", type=int, default=15, help="training epochs of every student (the cosine schedule spans them)"
    )
    parser.add_argument("--report", type=int, nargs="+", default=[1, 3, 5, 10, 15], help="epochs shown in the table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds; every method runs with each")
    parser.add_argument(
        "--width", type=float, default=0.5, help="width multiplier of the student (1.0: 32/64 channels)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    parser.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default="adamw",
        help="adamw (lr 1e-2, wd 0.01) or sgd (lr 0.1, momentum 0.9, wd 5e-4)",
    )
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's above)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batches", type=int, default=None, help="training batches per epoch (default: all)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="methods to run")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="an untrained ResNet-18 ×1/8 teacher (no --teacher needed), CE and the label-target control, 1 epoch "
        "of 2 batches of 16, seed 0: checks the script runs in seconds",
    )
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.report, args.seeds, args.batches, args.batch_size = 1, [1], [0], 2, 16
        args.teacher_width = 0.125
        args.methods = ["CE", "KD, label targets"] if args.methods == list(METHODS) else args.methods
    return args


def untrained_teacher(folder: str, width: float) -> str:
    """Return the path of an untrained ANN ResNet-18 teacher's state_dict written into ``folder``."""
    path = f"{folder}/untrained_teacher.pt"
    teacher = ANNClassifier(arch="resnet18", num_classes=10, in_channels=1, stem="cifar", width_multiplier=width)
    torch.save(teacher.network.state_dict(), path)
    return path


def digits(args: argparse.Namespace) -> StaticImageDataModule:
    """Return the digits data module; validation is off, the test split measures."""
    data = StaticImageDataModule(dataset="digits", batch_size=args.batch_size, val_fraction=0.0)
    data.setup("fit")
    return data


def teacher_summary(args: argparse.Namespace) -> tuple[float, float]:
    """Return the teacher's test accuracy and its mean top-1 logit margin over the training images."""
    teacher = load_teacher(args.teacher, "resnet18", 10, 1, "cifar", args.teacher_width)
    data = digits(args)
    with torch.no_grad():
        correct = sum((teacher(x).argmax(-1) == y).sum().item() for x, y in data.test_dataloader())
        margins = [(lambda top: top[:, 0] - top[:, 1])(teacher(x).topk(2).values) for x, _ in data.train_dataloader()]
    return correct / len(data.test_set), torch.cat(margins).mean().item()


def curve(method: str, seed: int, margin: float, args: argparse.Namespace) -> list[float]:
    """Train one student with ``method`` from ``seed``; return its test accuracy after every epoch."""
    loss, callbacks = METHODS[method]
    default_lr, optimizer = OPTIMIZERS[args.optimizer]
    L.seed_everything(seed, verbose=False)
    model = DistillationModule(
        teacher_checkpoint=args.teacher,
        teacher_arch="resnet18",
        teacher_width_multiplier=args.teacher_width,
        arch="resnet_mini",
        num_classes=10,
        in_channels=1,
        time_steps=4,
        width_multiplier=args.width,
        loss=loss,
        optimizer=optimizer(args.lr or default_lr),
    )
    data = digits(args)
    scores = TestCurve(data)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        limit_train_batches=args.batches,
        callbacks=[*callbacks(margin), scores, EpochSeed(seed)],
        accelerator="cpu",
        devices=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return scores.accuracies


def main() -> None:
    """Run every method with every seed and print the table of test accuracy at the reported epochs."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        if args.smoke:
            args.teacher = untrained_teacher(folder, args.teacher_width)
        teacher_accuracy, margin = teacher_summary(args)
        print(
            f"teacher (ANN ResNet-18) test accuracy {teacher_accuracy:.4f}, mean top-1 logit margin {margin:.2f}",
            flush=True,
        )
        curves: dict[str, list[list[float]]] = {}
        for method in args.methods:
            for seed in args.seeds:
                curves.setdefault(method, []).append(curve(method, seed, margin, args))
                shown = " ".join(f"{100 * curves[method][-1][e - 1]:.1f}" for e in args.report if e <= args.epochs)
                print(
                    f"{method:>18} seed {seed}: test acc at epochs {args.report}: {shown}  ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    lr = args.lr or OPTIMIZERS[args.optimizer][0]
    epochs = [e for e in args.report if e <= args.epochs]
    print(
        f"\nstudent resnet_mini width {args.width}, T=4, {args.epochs} epochs (cosine), batch {args.batch_size}, "
        f"{args.optimizer} lr {lr:g}, seeds {' '.join(map(str, args.seeds))}; "
        f"{time.perf_counter() - start:.0f} s in all\n"
    )
    print("| method | " + " | ".join(f"epoch {e}" for e in epochs) + " |")
    print("|---|" + "---|" * len(epochs))
    for method, runs in curves.items():
        cells = []
        for e in epochs:
            values = [run[e - 1] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{100 * statistics.mean(values):.2f} ± {100 * spread:.2f}")
        print(f"| {method} | " + " | ".join(cells) + " |")
    print("\n(every method but the standardized rows: tau 4, alpha 0.5, lambda 0.01; standardized rows: tau 2)")


if __name__ == "__main__":
    main()
