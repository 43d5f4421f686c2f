"""The papers' claims on real data: TSER > classical KD > CE and STAA ≥ a plain spiking ResNet, on Fashion-MNIST.

A measurement, not a test. At one equal budget (the same epochs, batch, optimizer and schedule for
every student), with the same seeds and, per seed, the same initial weights and batch order:

1. an ANN teacher (ResNet-18 at ``--teacher-width``) is trained once and cached on disk;
2. spiking students (``--arch``, default ``convnet2``, T=4, LIF) train with: CE of the time-mean
   logits, per-step CE (TET; the baseline TSER's per-step CE term should be judged against),
   classical KD, TSER, TSER with λ = 0 and KDSNN feature KD (CE + feature MSE), at the framework's
   defaults (τ = 4, α = 0.5, λ = 0.01; feature weight = KDSNN's 7e-5 per summed element);
3. the same plain student with STAA-SNN's aggregator in every layer (CE, and TSER; same backbone weights).

``--teacher-checkpoint`` takes a teacher trained elsewhere (``configs/quickstart_fashion_teacher.yaml``)
instead of training one. Variants of KD and TSER at other τ and α (``--methods "classical KD, τ 2" …``)
make the short sweep the README reports.

It prints, and writes as CSV and Markdown under ``--out``, the test accuracy (the full 10,000-image
test split) of every run, mean ± std over the seeds, the paired difference per seed (TSER − KD,
KD − CE, TSER − per-step CE, STAA − plain) and the accuracy after the first 1, 2 and 4 steps of the
models trained at T=4 (equal to evaluating them at ``time_steps`` 1, 2, 4: every network is causal
in time and starts each forward at rest; the script checks that on one batch). Runs go to
``--jobs`` worker processes, one line each as they finish.

    apt-get install dataset-fashion-mnist           # the real data, offline (or --download where a network exists)
    python benchmarks/paper_claims.py               # --root /usr/share/datasets/fashion-mnist --seeds 0 1 2 …
    python benchmarks/paper_claims.py --smoke --root DIR   # about a minute, on small IDX files (the suite runs it)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import Subset

from snn_lightning.callbacks import running_mean_logits
from snn_lightning.callbacks.safety import EpochSeed
from snn_lightning.data import StaticImageDataModule
from snn_lightning.data.splits import stratified_split
from snn_lightning.distill import TSERKD, ClassicalKD, FeatureKD, KDCallback, load_teacher
from snn_lightning.models import STAA
from snn_lightning.modules import ANNClassifier, DistillationModule, SNNClassifier

TIME_STEPS = 4
# KDSNN weighs the feature MSE summed over a sample's elements by 7e-5; FeatureKD takes a mean.
KDSNN_SUMMED_WEIGHT = 7e-5


@dataclass(frozen=True)
class Method:
    """One student recipe: its KD method (a key of ``KD_METHODS``), its own loss and whether it uses STAA."""

    name: str
    kd: str = ""
    loss: str = "mean_ce"
    staa: bool = False

    @property
    def distils(self) -> bool:
        """Whether the student needs the teacher."""
        return bool(self.kd)


# KD callbacks by method, given the number of elements of one teacher feature map.
KD_METHODS: dict[str, Callable[[int], list[KDCallback]]] = {
    "": lambda feature_elements: [],
    "classical": lambda feature_elements: [ClassicalKD()],
    "tser": lambda feature_elements: [TSERKD()],
    "tser_no_entropy": lambda feature_elements: [TSERKD(entropy_weight=0.0)],
    "feature": lambda feature_elements: [FeatureKD(weight=KDSNN_SUMMED_WEIGHT * feature_elements)],
    "classical_standardized": lambda feature_elements: [ClassicalKD(tau=2.0, standardize=True)],
    "tser_standardized": lambda feature_elements: [TSERKD(tau=2.0, standardize=True)],
    **{f"classical_τ {tau:g}": lambda _, tau=tau: [ClassicalKD(tau=tau)] for tau in (1.0, 8.0)},
    **{f"tser_τ {tau:g}": lambda _, tau=tau: [TSERKD(tau=tau)] for tau in (1.0, 8.0)},
    "classical_α 0.9": lambda feature_elements: [ClassicalKD(alpha=0.9)],
    "tser_α 0.9": lambda feature_elements: [TSERKD(alpha=0.9)],
}
METHODS = [
    Method("CE"),
    Method("per-step CE", loss="per_step_ce"),
    Method("classical KD", kd="classical"),
    Method("TSER", kd="tser"),
    Method("TSER, λ = 0", kd="tser_no_entropy"),
    Method("feature KD", kd="feature"),
    Method("STAA", staa=True),
    Method("STAA + TSER", kd="tser", staa=True),
    # Not in the default run (its 90-minute budget): logit standardization (Sun et al., CVPR 2024, base τ 2),
    # and the τ/α sweep of the two logit methods.
    Method("classical KD, standardized", kd="classical_standardized"),
    Method("TSER, standardized", kd="tser_standardized"),
    *(Method(f"classical KD, {name}", kd=f"classical_{name}") for name in ("τ 1", "τ 8", "α 0.9")),
    *(Method(f"TSER, {name}", kd=f"tser_{name}") for name in ("τ 1", "τ 8", "α 0.9")),
]
DEFAULT_METHODS = [m.name for m in METHODS[:8]]
PAIRS = [
    ("TSER", "classical KD"),
    ("classical KD", "CE"),
    ("TSER", "per-step CE"),
    ("STAA", "CE"),
    ("STAA + TSER", "STAA"),
]


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST folder (IDX files)")
    parser.add_argument("--download", action="store_true", help="download Fashion-MNIST into --root when missing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds; every method runs with each")
    parser.add_argument(
        "--epochs", type=int, default=1, help="training epochs of every student (cosine annealing to 0 over every step)"
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=60000,
        help="fixed stratified subset of the 60,000 training images the students train on",
    )
    parser.add_argument("--arch", default="convnet2", help="student network (a name of SPIKING_ARCHITECTURES)")
    parser.add_argument("--width", type=float, default=1.0, help="student width multiplier")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size of teacher and students")
    parser.add_argument(
        "--crop-padding",
        type=int,
        default=0,
        help="shift of the random training crop (0: flips only, the quickstart's)",
    )
    parser.add_argument(
        "--optimizer",
        choices=("sgd", "adamw", "adam"),
        default="adam",
        help="sgd: momentum 0.9, wd 5e-4 (the papers'); adamw: wd 0.01; adam: no weight decay (the plain loop's)",
    )
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="student learning rate (cosine annealing over the epochs)"
    )
    parser.add_argument(
        "--teacher-checkpoint",
        default="",
        help="a trained ANN ResNet-18 checkpoint (of --teacher-width) to use instead of training one",
    )
    parser.add_argument("--teacher-width", type=float, default=0.25, help="teacher ANN ResNet-18 width multiplier")
    parser.add_argument(
        "--teacher-epochs",
        type=int,
        default=3,
        help="teacher training epochs on all 60,000 images (SGD lr 0.1, cosine)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=DEFAULT_METHODS,
        choices=[m.name for m in METHODS],
        help="methods to run; rows of other methods that an earlier run with the same settings wrote to --out are kept",
    )
    parser.add_argument(
        "--precision",
        choices=("32-true", "bf16-mixed"),
        default="32-true",
        help="Lightning precision of every training run (bf16-mixed: about 1.6x the images/s on CPUs with AVX-512-BF16)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, each with cores/jobs threads")
    parser.add_argument(
        "--out",
        default=None,
        help="folder of the teacher cache and the tables (default: benchmarks/results/paper_claims; with --smoke a "
        "temporary folder)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seed 0, 1 teacher and 1 student epoch of batch 16, CE and classical KD unless --methods, 1 job: checks "
        "the script runs, in about a minute on small IDX files",
    )
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.epochs, args.teacher_epochs, args.batch_size, args.jobs = [0], 1, 1, 16, 1
        args.methods = ["CE", "classical KD"] if args.methods == DEFAULT_METHODS else args.methods
    return args


def fashion_mnist(args: argparse.Namespace, download: bool = False, subset: bool = False) -> StaticImageDataModule:
    """Return the Fashion-MNIST data module (the test split measures); ``subset`` trains on ``--train-images`` only."""
    data = StaticImageDataModule(
        dataset="fashion_mnist",
        root=args.root,
        download=download,
        batch_size=args.batch_size,
        val_fraction=0.0,
        crop_padding=args.crop_padding,
    )
    if subset and args.train_images < 60000:
        data.setup("fit")  # later setup calls keep the splits built here
        labels = data.train_set.source.labels[data.train_set.indices]
        kept, _ = stratified_split(labels, 1 - args.train_images / len(labels), seed=0)
        data.train_set = Subset(data.train_set, kept.tolist())
    return data


def quiet_trainer(precision: str, **options) -> L.Trainer:
    """Return a CPU trainer at ``precision`` that logs, checkpoints and validates nothing."""
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **options,
    )


def teacher_path(args: argparse.Namespace) -> Path:
    """Return the cache file of the teacher these settings train."""
    settings = dict(
        width=args.teacher_width, epochs=args.teacher_epochs, batch=args.batch_size, seed=0, precision=args.precision
    )
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return Path(args.out) / f"teacher-resnet18-w{args.teacher_width:g}-{key}.ckpt"


def train_teacher(args: argparse.Namespace) -> tuple[Path, float]:
    """Train the ANN teacher unless cached; return its checkpoint and its test accuracy."""
    path = Path(args.teacher_checkpoint) if args.teacher_checkpoint else teacher_path(args)
    data = fashion_mnist(args, download=args.download)
    if not path.is_file():
        L.seed_everything(0, verbose=False)
        teacher = ANNClassifier(
            arch="resnet18", num_classes=10, in_channels=1, stem="cifar", width_multiplier=args.teacher_width
        )
        trainer = quiet_trainer(args.precision, max_epochs=args.teacher_epochs, callbacks=[EpochSeed(0)])
        trainer.fit(teacher, datamodule=data)
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path, weights_only=True)
    network = load_teacher(str(path), "resnet18", 10, 1, "cifar", args.teacher_width)
    data.setup("test")
    with torch.no_grad():
        correct = sum((network(x).argmax(-1) == y).sum().item() for x, y in data.test_dataloader())
    return path, correct / len(data.test_set)


def initial_weights(seed: int, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Return the plain student's initial weights for ``seed``; every method of that seed starts from them."""
    L.seed_everything(seed, verbose=False)
    return student(Method("CE"), args, teacher="").network.state_dict()


def student(method: Method, args: argparse.Namespace, teacher: str) -> SNNClassifier:
    """Return the untrained student of ``method``."""
    if args.optimizer == "sgd":
        optimizer = lambda parameters: torch.optim.SGD(parameters, lr=args.lr, momentum=0.9, weight_decay=5e-4)  # noqa: E731
    elif args.optimizer == "adamw":
        optimizer = lambda parameters: torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)  # noqa: E731
    else:
        optimizer = lambda parameters: torch.optim.Adam(parameters, lr=args.lr)  # noqa: E731
    options = dict(
        arch=args.arch,
        num_classes=10,
        in_channels=1,
        time_steps=TIME_STEPS,
        width_multiplier=args.width,
        loss=method.loss,
        neuron=STAA() if method.staa else None,
        optimizer=optimizer,
    )
    if method.distils:
        return DistillationModule(
            teacher_checkpoint=teacher, teacher_arch="resnet18", teacher_width_multiplier=args.teacher_width, **options
        )
    return SNNClassifier(**options)


def test_logits(model: SNNClassifier, data: StaticImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the per-step test logits ``[T, N, classes]`` and the labels ``[N]``."""
    model.eval()
    data.setup("test")
    logits, labels = [], []
    with torch.no_grad():
        for images, targets in data.test_dataloader():
            logits.append(model(images))
            labels.append(targets)
    return torch.cat(logits, 1), torch.cat(labels)


def check_causal(model: SNNClassifier, data: StaticImageDataModule, full: torch.Tensor) -> None:
    """Raise if evaluating at fewer time steps differs from the first steps of the T=4 run (one batch)."""
    images, _ = next(iter(data.test_dataloader()))
    with torch.no_grad():
        for steps in (1, 2):
            model.eval_time_steps = steps
            torch.testing.assert_close(model(images), full[:steps, : len(images)], rtol=1e-4, atol=1e-4)
    model.eval_time_steps = None


def run(method: Method, seed: int, args: argparse.Namespace, teacher: str, init: dict, threads: int) -> dict:
    """Train one student; return its accuracies after 1..T steps and its wall time."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    L.seed_everything(seed, verbose=False)
    model = student(method, args, teacher)
    missing, unexpected = model.network.load_state_dict(init, strict=False)
    # STAA adds its own parameters (missing here); every weight of the plain network must be taken.
    assert not unexpected and (method.staa or not missing), (missing, unexpected)
    feature_elements = 0
    if method.distils:
        teacher_network = load_teacher(teacher, "resnet18", 10, 1, "cifar", args.teacher_width)
        with torch.no_grad():
            feature_elements = teacher_network.forward_features(torch.zeros(1, 1, 28, 28))[0].numel()
    data = fashion_mnist(args, subset=True)
    trainer = quiet_trainer(
        args.precision,
        max_epochs=args.epochs,
        callbacks=[*KD_METHODS[method.kd](feature_elements), EpochSeed(seed)],
    )
    trainer.fit(model, datamodule=data)
    logits, labels = test_logits(model, data)
    if seed == args.seeds[0]:
        check_causal(model, data, logits)
    correct = (running_mean_logits(logits).argmax(-1) == labels).float().mean(1)
    return dict(
        method=method.name,
        seed=seed,
        **{f"acc_t{t + 1}": correct[t].item() for t in range(TIME_STEPS)},
        seconds=time.perf_counter() - start,
    )


def mean_std(values: list[float]) -> str:
    """Return ``mean ± std`` in percent."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * spread:.2f}"


def tables(results: list[dict], args: argparse.Namespace, header: str) -> str:
    """Return the Markdown tables of accuracy per seed, paired differences and accuracy at fewer steps."""
    final = f"acc_t{TIME_STEPS}"
    by = {(r["method"], r["seed"]): r for r in results}
    methods = [m.name for m in METHODS if any(r["method"] == m.name for r in results)]
    seeds = args.seeds
    lines = [
        header,
        "",
        f"| method | {' | '.join(f'seed {s}' for s in seeds)} | mean ± std (%) |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for name in methods:
        values = [by[name, s][final] for s in seeds]
        lines.append(f"| {name} | {' | '.join(f'{100 * v:.2f}' for v in values)} | {mean_std(values)} |")
    pairs = [(first, second) for first, second in PAIRS if first in methods and second in methods]
    if pairs:
        lines += [
            "",
            f"| paired difference (points) | {' | '.join(f'seed {s}' for s in seeds)} | mean ± std |",
            "|---|" + "---|" * (len(seeds) + 1),
        ]
    for first, second in pairs:
        gaps = [by[first, s][final] - by[second, s][final] for s in seeds]
        lines.append(f"| {first} − {second} | {' | '.join(f'{100 * g:+.2f}' for g in gaps)} | {mean_std(gaps)} |")
    lines += [
        "",
        "| trained at T=4, evaluated after | " + " | ".join(f"T={t}" for t in (1, 2, 4)) + " |",
        "|---|---|---|---|",
    ]
    for name in methods:
        cells = [mean_std([by[name, s][f"acc_t{t}"] for s in seeds]) for t in (1, 2, 4)]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def settings(args: argparse.Namespace) -> dict:
    """Return the settings that make two runs' rows comparable (all but the methods, jobs and output folder).

    ``smoke`` is left out too: the settings it changes are recorded themselves, and the files of earlier runs lack it.
    """
    ignored = ("methods", "jobs", "out", "download", "smoke")
    return {key: value for key, value in vars(args).items() if key not in ignored}


def earlier_results(out: Path, args: argparse.Namespace) -> list[dict]:
    """Return the rows an earlier run with the same settings wrote to ``out``, or none."""
    table, recorded = out / "paper_claims.csv", out / "settings.json"
    if not (table.is_file() and recorded.is_file()) or json.loads(recorded.read_text()) != settings(args):
        return []
    with open(table, newline="") as file:
        rows = list(csv.DictReader(file))
    return [
        {**row, "seed": int(row["seed"]), **{k: float(v) for k, v in row.items() if k not in ("method", "seed")}}
        for row in rows
    ]


def main() -> None:
    """Train the teacher (or read its cache), every student with every seed, then print and write the tables."""
    args = parse_args()
    with tempfile.TemporaryDirectory() as folder:
        # A smoke run never writes over the recorded results.
        args.out = args.out or (folder if args.smoke else "benchmarks/results/paper_claims")
        measure(args)


def run_all(
    jobs: list[tuple[Method, int]], args: argparse.Namespace, teacher: str, inits: dict[int, dict], threads: int
) -> Iterator[dict]:
    """Yield the result of every (method, seed) job as it ends: in this process for one job at a time, else in a pool."""
    if args.jobs == 1:  # no pool: a failing run raises here instead of leaving a pool waiting on a dead worker
        yield from (run(method, seed, args, teacher, inits[seed], threads) for method, seed in jobs)
        return
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run, method, seed, args, teacher, inits[seed], threads) for method, seed in jobs]
        yield from (future.result() for future in as_completed(futures))


def measure(args: argparse.Namespace) -> None:
    """Train the teacher and every student, then print the tables and write them under ``args.out``."""
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher, teacher_accuracy = train_teacher(args)
    print(
        f"teacher ANN ResNet-18 ×{args.teacher_width:g}: test acc {teacher_accuracy:.4f} ({time.perf_counter() - start:.0f} s; {teacher})",
        flush=True,
    )
    methods = [m for m in METHODS if m.name in args.methods]
    inits = {seed: initial_weights(seed, args) for seed in args.seeds}
    # STAA runs are the longest: start them first, so the last minutes are not one run alone.
    jobs = sorted(((m, s) for m in methods for s in args.seeds), key=lambda job: not job[0].staa)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    results = []
    for done, result in enumerate(run_all(jobs, args, str(teacher), inits, threads), 1):
        results.append(result)
        elapsed = time.perf_counter() - start
        print(
            f"[{done}/{len(jobs)}] {result['method']:>12} seed {result['seed']}: test acc {result[f'acc_t{TIME_STEPS}']:.4f} "
            f"(T=1 {result['acc_t1']:.4f}, T=2 {result['acc_t2']:.4f}) in {result['seconds']:.0f} s; {elapsed / 60:.1f} min so far",
            flush=True,
        )
    minutes = (time.perf_counter() - start) / 60
    kept = earlier_results(out, args)
    results += [r for r in kept if r["method"] not in args.methods]
    header = (
        f"Fashion-MNIST test accuracy (10,000 images). Students {args.arch} ×{args.width:g}, T={TIME_STEPS}, LIF, "
        f"{args.epochs} epochs of a fixed {args.train_images:,}-image stratified subset, batch {args.batch_size}, crop padding {args.crop_padding}, {args.optimizer} lr {args.lr:g} "
        f"cosine, {args.precision}; teacher ANN ResNet-18 ×{args.teacher_width:g} ({args.teacher_checkpoint or f'{args.teacher_epochs} epochs'}), test acc "
        f"{100 * teacher_accuracy:.2f} %; τ 4, α 0.5, λ 0.01; seeds {' '.join(map(str, args.seeds))}; "
        f"{minutes:.1f} min in all on {os.cpu_count()} cores ({args.jobs} runs at once)"
        + (
            f"; rows of {', '.join(sorted({r['method'] for r in kept} - set(args.methods)))} from an earlier run."
            if kept
            else "."
        )
    )
    text = tables(results, args, header)
    print("\n" + text)
    (out / "paper_claims.md").write_text(text + "\n")
    (out / "settings.json").write_text(json.dumps(settings(args), indent=1))
    with open(out / "paper_claims.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(sorted(results, key=lambda r: (r["method"], r["seed"])))
    print(f"\nwritten: {out / 'paper_claims.md'}, {out / 'paper_claims.csv'}")


if __name__ == "__main__":
    main()
