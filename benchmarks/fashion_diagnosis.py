"""Why the Fashion-MNIST quickstart trained to 75 %: each suspect changed alone, at one small budget.

A measurement, not a test. Every variant starts from the quickstart's former recipe (``resnet_mini``
×0.5, T=4, LIF, AdamW lr 5e-3 wd 0.01, cosine stepped per epoch, batch 64, crop + flip) and changes
one thing; it trains ``--batches`` batches per epoch for ``--epochs`` epochs on one thread, with the
same seed, then tests on the whole 10,000-image test split. Variants run ``--jobs`` at a time.

    python benchmarks/fashion_diagnosis.py                      # every variant, /usr/share/datasets/fashion-mnist
    python benchmarks/fashion_diagnosis.py --variants former per_step_cosine --seeds 0 1
    python benchmarks/fashion_diagnosis.py --smoke              # seconds, on the embedded digits (the suite runs it)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import Any

import lightning as L
import torch

from snn_lightning.data import StaticImageDataModule
from snn_lightning.modules import SNNClassifier


def per_epoch_cosine(optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Return the former default schedule: cosine over ``epochs``, stepped once per epoch."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)


def adamw(parameters: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Return AdamW with the given rate and weight decay."""
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


FORMER_MODEL: dict[str, Any] = dict(arch="resnet_mini", width_multiplier=0.5, time_steps=4)
FORMER_DATA: dict[str, Any] = dict(batch_size=64, augment=True)
# Each variant: (model changes, data changes, optimizer lr, weight decay, per-epoch schedule?) against the former recipe.
VARIANTS: dict[str, dict[str, Any]] = {
    "former": {},
    "per_step_cosine": dict(per_epoch=False),
    "no_augment": dict(data=dict(augment=False)),
    "dense_conv": dict(model=dict(spike_conv_max_density=0.0)),
    "lr_2e-3": dict(lr=2e-3),
    "no_weight_decay": dict(weight_decay=0.0),
    "batch_128": dict(data=dict(batch_size=128)),
    "width_x1": dict(model=dict(width_multiplier=1.0)),
    "convnet2": dict(model=dict(arch="convnet2", width_multiplier=1.0)),
    "convnet2_new_recipe": dict(model=dict(arch="convnet2", width_multiplier=1.0), lr=2e-3, per_epoch=False),
}


def run_variant(name: str, seed: int, args: argparse.Namespace) -> tuple[str, int, float, float]:
    """Train and test one variant on one thread; return its name, seed, test accuracy and seconds."""
    torch.set_num_threads(1)
    variant = VARIANTS[name]
    L.seed_everything(seed, verbose=False)
    data = StaticImageDataModule(
        dataset=args.dataset,
        root=args.root,
        val_fraction=0.1,
        num_workers=0,
        **{**FORMER_DATA, **variant.get("data", {})},
    )
    epochs = args.epochs
    model = SNNClassifier(
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        optimizer=partial(adamw, lr=variant.get("lr", 5e-3), weight_decay=variant.get("weight_decay", 0.01)),
        lr_scheduler=partial(per_epoch_cosine, epochs=epochs) if variant.get("per_epoch", True) else None,
        **{**FORMER_MODEL, **variant.get("model", {})},
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=args.batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    accuracy = trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]
    return name, seed, accuracy, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="folder of the four IDX files")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=140, help="training batches per epoch (140 × 64 ≈ 9,000 images)")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once, one thread each")
    parser.add_argument(
        "--smoke", action="store_true", help="the embedded digits, 3 batches, 1 epoch: checks the script runs"
    )
    args = parser.parse_args()
    args.dataset = "fashion_mnist"
    if args.smoke:
        args.dataset, args.epochs, args.batches, args.jobs = "digits", 1, 3, 1
        args.variants = ["former", "convnet2_new_recipe"] if args.variants == list(VARIANTS) else args.variants
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    runs = [(name, seed) for name in args.variants for seed in args.seeds]
    print(f"{len(runs)} runs: {args.epochs} epochs × {args.batches} batches on {args.dataset}, {args.jobs} at a time")
    results: dict[str, list[tuple[float, float]]] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_variant, name, seed, args) for name, seed in runs]
        for future in futures:
            name, seed, accuracy, seconds = future.result()
            print(f"  {name:22s} seed {seed}: test/acc {accuracy:.4f}  ({seconds:.0f} s)", flush=True)
            results.setdefault(name, []).append((accuracy, seconds))
    print(f"\n| variant | test/acc (mean over {len(args.seeds)} seed(s)) | fit seconds |\n|---|---|---|")
    for name, values in results.items():
        accuracies = [accuracy for accuracy, _ in values]
        print(f"| {name} | {statistics.mean(accuracies):.4f} | {statistics.mean(s for _, s in values):.0f} |")


if __name__ == "__main__":
    main()
