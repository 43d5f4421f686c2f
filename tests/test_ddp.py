"""DDP on the CPU (2 processes, gloo): metrics synced over ranks, parity with one process, frozen teacher, sync-BN.

The DDP half runs this file as a script (`python -m test_ddp OUT [uneven]`); Lightning's `ddp`
strategy starts the second rank by running the same command again.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from snn_lightning.callbacks import EnergyEstimate, SpikeStats
from snn_lightning.data import StaticImageDataModule, load_digits
from snn_lightning.data.split_module import SplitDataModule, evaluation_shard_sampler
from snn_lightning.errors import ConfigurationError
from snn_lightning.layers import TemporalBatchNorm2d
from snn_lightning.models import ANN_ARCHITECTURES, spiking_resnet_mini
from snn_lightning.modules import SNNClassifier

TESTS = Path(__file__).resolve().parent
GLOBAL_BATCH = 32
TRAIN_BATCHES = 8
# 216 held-out images for validation; the 359 test images are an odd count, which the data
# modules' unpadded shards split 180/179 (torch's DistributedSampler would repeat one).
VAL_FRACTION = 0.15
# An evaluation set whose size 2 ranks do not divide: padding would score 34 samples. In batches
# of 16, rank 0's 17 samples take one batch more than rank 1's 16.
UNEVEN_SIZE = 33
# |acc(2 ranks) - acc(1 process)| allowed after training: the ranks normalise their own half batch
# (torch's SyncBatchNorm runs on GPUs only), so the runs differ slightly; evaluating the same
# weights must agree exactly on the validation set.
TRAINED_ACC_TOLERANCE = 0.05


class OrderedDigits(StaticImageDataModule):
    """The digits without shuffling or augmentation: rank r of n trains on samples r, r+n, … of the same global batches.

    Lightning's own training sampler under DDP always shuffles, so training uses this one
    (with ``use_distributed_sampler=False``); evaluation keeps the data module's unpadded shards.
    """

    def train_dataloader(self):
        sampler = DistributedSampler(self.train_set, shuffle=False) if torch.distributed.is_initialized() else None
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler)


class FirstTestDigits(SplitDataModule):
    """The first UNEVEN_SIZE digits test images as validation, test and predict set (test helper)."""

    batch_size = 16
    num_workers = 0
    pin_memory = False

    def setup(self, stage: str | None = None) -> None:
        images, labels = load_digits("test")
        self.val_set = self.test_set = TensorDataset(
            torch.from_numpy(images[:UNEVEN_SIZE]), torch.from_numpy(labels[:UNEVEN_SIZE])
        )


class ScoredSamples(L.Callback):
    """Record per evaluation stage the sampler Lightning ran, the indices it gave this rank and the samples scored (test helper)."""

    def __init__(self) -> None:
        self.seen: dict[str, dict] = {}

    def _batch_end(self, trainer: L.Trainer, stage: str, batch) -> None:
        if stage not in self.seen:
            # The batch sampler's: for predict Lightning wraps it (to record indices) and leaves loader.sampler unused.
            sampler = getattr(trainer, f"{stage}_dataloaders").batch_sampler.sampler
            self.seen[stage] = {"sampler": type(sampler).__name__, "indices": list(sampler), "scored": 0, "batches": 0}
        self.seen[stage]["scored"] += len(batch[1])
        self.seen[stage]["batches"] += 1

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._batch_end(trainer, "val", batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_end(trainer, "test", batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_end(trainer, "predict", batch)


def evaluate_uneven(model: SNNClassifier, devices: int) -> dict:
    """Return the val and test metrics of ``model`` on the UNEVEN_SIZE images, and what this rank scored."""
    data, scored = FirstTestDigits(), ScoredSamples()
    trainer = make_trainer(devices, (scored,))
    metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    metrics.update(trainer.test(model, datamodule=data, verbose=False)[0])
    trainer.predict(model, datamodule=data, return_predictions=False)
    return {"metrics": {name: float(value) for name, value in metrics.items()}, "seen": scored.seen}


class SigtermWhileRankOneWaits(L.Callback):
    """Write each rank's pid into ``pid_dir``; on rank 0, before training batch ``batch``, let rank 1 go ahead into
    the step's collectives, then send this process SIGTERM (test helper)."""

    def __init__(self, batch: int, pid_dir: str) -> None:
        """
        Args:
            batch: index of the epoch-0 training batch before which rank 0 is signalled.
            pid_dir: folder for the files ``rank<r>.pid``.
        """
        self.batch, self.pid_dir = batch, Path(pid_dir)

    def on_train_start(self, trainer, pl_module) -> None:
        (self.pid_dir / f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_rank == 0 and (trainer.current_epoch, batch_idx) == (0, self.batch):
            time.sleep(2)  # rank 1 meanwhile blocks in this step's first all-reduce
            os.kill(os.getpid(), signal.SIGTERM)


class FreezeBatchNorm(L.Callback):
    """Keep every BatchNorm in evaluation mode while training, so no statistic depends on how a batch is split (test helper)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class RecordWrapper(L.Callback):
    """Record, during training, the type of the module the strategy runs and the ids of its parameters (test helper)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.wrapper = type(trainer.strategy.model).__name__
        self.parameter_ids = {id(parameter) for parameter in trainer.strategy.model.parameters()}


def make_model() -> SNNClassifier:
    """Return the small spiking ResNet every run starts from (seeded)."""
    L.seed_everything(0, verbose=False)
    return SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, width_multiplier=0.5)


def make_trainer(devices: int, extra_callbacks: tuple = (), **kwargs) -> L.Trainer:
    """Return a CPU trainer on ``devices`` processes with the firing-rate and energy callbacks and ``extra_callbacks``."""
    kwargs.setdefault("max_steps", TRAIN_BATCHES)
    return L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[SpikeStats(), EnergyEstimate(), *extra_callbacks],
        **kwargs,
    )


def make_data(devices: int) -> OrderedDigits:
    """Return the digits with the per-process batch of one global batch of 32."""
    return OrderedDigits(batch_size=GLOBAL_BATCH // devices, val_fraction=VAL_FRACTION, augment=False)


def train(devices: int, freeze_batchnorm: bool = False) -> SNNClassifier:
    """Return the seeded model after TRAIN_BATCHES global batches on ``devices`` processes."""
    model = make_model()
    callbacks = (FreezeBatchNorm(),) if freeze_batchnorm else ()
    make_trainer(devices, callbacks, use_distributed_sampler=False).fit(model, datamodule=make_data(devices))
    return model


def calibrate_batchnorm(model: SNNClassifier, batches: int = 8) -> None:
    """Set every BatchNorm's running statistics to the average over ``batches`` training batches (BN recalibration).

    After a few training steps the running statistics lag far behind (momentum 0.1), so the model
    barely spikes in evaluation; calibrated, it spikes as in training and its metrics vary per sample.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    data = make_data(1)
    data.setup("fit")
    model.train()
    with torch.no_grad():
        for (images, _), _ in zip(data.train_dataloader(), range(batches)):
            model(images)
    for norm in norms:
        norm.momentum = 0.1


def evaluate(model: SNNClassifier, devices: int, test: bool = True) -> dict[str, float]:
    """Return the validation (and test) metrics of ``model`` on ``devices`` processes."""
    trainer, data = make_trainer(devices), make_data(devices)
    metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    if test:
        metrics.update(trainer.test(model, datamodule=data, verbose=False)[0])
    return {name: float(value) for name, value in metrics.items()}


def distil(out: Path) -> dict:
    """Train a DistillationModule for 3 steps on 2 ranks; return what this rank sees of its teacher."""
    from snn_lightning.distill import ClassicalKD
    from snn_lightning.modules import DistillationModule

    model = DistillationModule(
        teacher_checkpoint=str(out / "teacher.pt"),
        teacher_arch="resnet18",
        teacher_stem="cifar",
        arch="resnet_mini",
        num_classes=10,
        in_channels=1,
        width_multiplier=0.5,
    )
    record = RecordWrapper()
    trainer = make_trainer(2, (ClassicalKD(), record), max_steps=3, use_distributed_sampler=False)
    trainer.fit(model, datamodule=make_data(2))
    teacher = model.teacher
    saved = torch.load(out / "teacher.pt", weights_only=True)
    return {
        "wrapper": record.wrapper,
        "teacher_in_ddp": any(id(parameter) in record.parameter_ids for parameter in teacher.parameters()),
        "teacher_requires_grad": any(parameter.requires_grad for parameter in teacher.parameters()),
        "teacher_training": teacher.training,
        "teacher_unchanged": all(torch.equal(value, saved[key]) for key, value in teacher.state_dict().items()),
        "teacher_in_checkpoint": any(key.startswith("teacher") for key in model.state_dict()),
        "student_steps": trainer.global_step,
    }


def ddp_main(out: Path) -> None:
    """Entry point of each of the 2 DDP ranks: write ``out/rank<r>.json`` (metrics, teacher checks), rank 0 the weights."""
    trained = make_model()
    trained.load_state_dict(torch.load(out / "trained.pt", weights_only=True))
    results = {"same_weights": evaluate(trained, 2)}
    model = train(2)
    results["after_training"] = evaluate(model, 2, test=False)
    frozen = train(2, freeze_batchnorm=True)
    results["distillation"] = distil(out)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    if rank == 0:
        torch.save({"trained": model.state_dict(), "frozen_batchnorm": frozen.state_dict()}, out / "ddp_weights.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train and evaluate in one process here, then in 2 ranks (a subprocess) from the same seed and weights."""
    out = tmp_path_factory.mktemp("ddp")
    model = train(1)
    single = evaluate(model, 1)
    calibrate_batchnorm(model)
    torch.save(model.state_dict(), out / "trained.pt")
    single_calibrated = evaluate(model, 1)
    teacher = ANN_ARCHITECTURES["resnet18"](num_classes=10, in_channels=1, stem="cifar")
    torch.save(teacher.state_dict(), out / "teacher.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "test_ddp", str(out)], cwd=out, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    ddp_weights = torch.load(out / "ddp_weights.pt", weights_only=True)
    single_weights = {"trained": model.state_dict(), "frozen_batchnorm": train(1, freeze_batchnorm=True).state_dict()}
    print_table(single, single_calibrated, ranks[0])
    return {"trained": single, "calibrated": single_calibrated}, single_weights, ranks, ddp_weights


def max_weight_difference(first: dict, second: dict) -> float:
    """Return the largest absolute difference between the learnt tensors (not BN statistics) of two state dicts."""
    keys = [key for key, value in first.items() if value.is_floating_point() and "running" not in key]
    return max((first[key] - second[key]).abs().max().item() for key in keys)


def print_table(trained: dict, calibrated: dict, ddp: dict) -> None:
    """Print the metrics of one process and of 2 ranks side by side (shown with pytest -s)."""
    print(f"\n{'metric':<36}{'1 process':>14}{'2 ranks':>14}")
    for label, single, ranks in (
        ("same weights", calibrated, ddp["same_weights"]),
        ("after training", trained, ddp["after_training"]),
    ):
        for name in ranks:
            if "/firing_rate/" not in name:
                print(f"{label + ': ' + name:<36}{single[name]:>14.6g}{ranks[name]:>14.6g}")


@pytest.mark.slow
def test_every_rank_reports_the_metrics_of_the_whole_set_as_one_process_does(runs):
    single, _, ranks, _ = runs
    single = single["calibrated"]
    assert {"val/acc", "val/loss", "val/firing_rate", "test/acc", "test/energy_mj", "test/sops"} <= set(single)
    assert single["val/firing_rate"] > 0.01, "the calibrated model spikes"
    for rank in ranks:
        assert rank["same_weights"] == ranks[0]["same_weights"], "the ranks report different metrics"
        assert rank["same_weights"].keys() == single.keys()
    ddp = ranks[0]["same_weights"]
    for name in single:
        if name.startswith("val/"):
            assert ddp[name] == pytest.approx(single[name], rel=1e-5, abs=1e-7), name
    # The 359 test images are split 180/179 without a repeat: test metrics are one process's too.
    for name in single:
        assert ddp[name] == pytest.approx(single[name], rel=1e-5, abs=1e-7), name


@pytest.mark.slow
def test_two_ranks_with_the_same_global_batch_train_like_one_process(runs):
    single, single_weights, ranks, ddp_weights = runs
    single = single["trained"]
    assert ranks[1]["after_training"] == ranks[0]["after_training"], "the ranks report different metrics"
    ddp = ranks[0]["after_training"]
    assert abs(ddp["val/acc"] - single["val/acc"]) <= TRAINED_ACC_TOLERANCE
    assert abs(ddp["val/loss"] - single["val/loss"]) <= 0.05
    difference = max_weight_difference(single_weights["trained"], ddp_weights["trained"])
    frozen = max_weight_difference(single_weights["frozen_batchnorm"], ddp_weights["frozen_batchnorm"])
    print(
        f"\nmax |weight difference| after {TRAIN_BATCHES} steps: {difference:.3g}, with BatchNorm frozen: {frozen:.3g}"
    )
    assert difference < 0.05
    # Only the per-rank batch statistics differ: without them, DDP's averaged gradients are one process's.
    assert frozen < 1e-6


@pytest.mark.slow
def test_the_teacher_is_frozen_once_per_rank_and_outside_ddp(runs):
    for rank in runs[2]:
        assert rank["distillation"] == {
            "wrapper": "DistributedDataParallel",
            "teacher_in_ddp": False,
            "teacher_requires_grad": False,
            "teacher_training": False,
            "teacher_unchanged": True,
            "teacher_in_checkpoint": False,
            "student_steps": 3,
        }


@pytest.mark.slow
def test_ddp_evaluation_scores_every_sample_of_an_odd_sized_set_once(tmp_path):
    model = make_model()
    calibrate_batchnorm(model)  # so that it spikes: firing rates and energy are compared too
    torch.save(model.state_dict(), tmp_path / "uneven.pt")
    single = evaluate_uneven(model, 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "test_ddp", str(tmp_path), "uneven"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}_uneven.json").read_text()) for rank in (0, 1)]
    for stage in ("val", "test", "predict"):
        seen = [rank["seen"][stage] for rank in ranks]
        assert [shard["sampler"] for shard in seen] == ["UnrepeatedDistributedSampler"] * 2, (
            "Lightning replaced the sampler"
        )
        assert sorted(seen[0]["indices"] + seen[1]["indices"]) == list(range(UNEVEN_SIZE)), stage
        assert [shard["scored"] for shard in seen] == [17, 16], stage
        assert [shard["batches"] for shard in seen] == [2, 1], (
            "the ranks run different numbers of batches, without a hang"
        )
        assert single["seen"][stage]["scored"] == UNEVEN_SIZE
    assert 0 < single["metrics"]["test/acc"] < 1, "a repeated sample would then change the accuracy"
    assert single["metrics"]["test/firing_rate"] > 0
    for rank in ranks:
        assert rank["metrics"].keys() == single["metrics"].keys()
        for name, value in single["metrics"].items():
            # Exact counts (accuracy, spikes); the loss is a sum of per-sample losses in another order.
            assert rank["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert rank["metrics"]["test/acc"] == single["metrics"]["test/acc"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_sigterm_under_ddp_stops_both_ranks_with_one_line(tmp_path):
    callback = {"class_path": "test_ddp.SigtermWhileRankOneWaits", "init_args": {"batch": 2, "pid_dir": str(tmp_path)}}
    command = [
        sys.executable,
        "-m",
        "snn_lightning.cli",
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--model.width_multiplier",
        "0.25",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "6",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.callbacks",
        json.dumps([callback]),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, stderr = process.communicate(timeout=120)
        deadline = time.monotonic() + 15
        rank1 = int((tmp_path / "rank1.pid").read_text())
        while _alive(rank1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(rank1), "rank 1 is still running after rank 0 stopped"
    finally:
        process.kill()
        for pid_file in tmp_path.glob("rank*.pid"):
            if _alive(pid := int(pid_file.read_text())):
                os.kill(pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and "Error" not in stderr, stderr[-3000:]
    assert [line for line in stderr.splitlines() if "SIGTERM" in line] == [
        "stopped by SIGTERM in epoch 0 (global step 3); no checkpoint was written yet"
    ]
    assert len(stderr.splitlines()) < 40


def test_unpadded_shards_cover_the_set_once_and_refuse_an_empty_rank():
    dataset = TensorDataset(torch.arange(7))
    shards = [list(evaluation_shard_sampler(dataset, num_replicas=3, rank=rank)) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert [len(evaluation_shard_sampler(dataset, num_replicas=3, rank=rank)) for rank in range(3)] == [3, 2, 2]
    with pytest.raises(
        ConfigurationError,
        match="evaluation set of 7 samples .* 8 DDP processes a sample; evaluate on at most 7 processes",
    ):
        evaluation_shard_sampler(dataset, num_replicas=8, rank=7)


def test_sync_batchnorm_conversion_keeps_the_time_fold():
    torch.manual_seed(0)
    model = spiking_resnet_mini(num_classes=10, in_channels=1, time_steps=4, width_multiplier=0.25)
    images = torch.rand(6, 1, 8, 8)
    expected = model(images)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(converted.stem[1], TemporalBatchNorm2d) and isinstance(converted.stem[1].module, nn.SyncBatchNorm)
    # Without a process group SyncBatchNorm normalises like BatchNorm: same outputs iff T is still folded into B.
    torch.testing.assert_close(converted(images), expected)


def test_checkpoints_from_before_the_batchnorm_wrapper_still_load():
    model = spiking_resnet_mini(num_classes=10, in_channels=1, time_steps=4, width_multiplier=0.25)
    norms = [name for name, module in model.named_modules() if isinstance(module, TemporalBatchNorm2d)]
    old_state = {}
    for key, value in model.state_dict().items():
        norm = next((name for name in norms if key.startswith(f"{name}.module.")), None)
        old_state[f"{norm}.{key.removeprefix(f'{norm}.module.')}" if norm else key] = value + 1
    assert "stem.1.running_mean" in old_state and "stem.0.module.weight" in old_state
    model.load_state_dict(old_state)
    torch.testing.assert_close(model.stem[1].running_mean, old_state["stem.1.running_mean"])


def ddp_uneven_main(out: Path) -> None:
    """Entry point of each of the 2 DDP ranks of the odd-sized evaluation: write ``out/rank<r>_uneven.json``."""
    model = make_model()
    model.load_state_dict(torch.load(out / "uneven.pt", weights_only=True))
    results = evaluate_uneven(model, 2)
    (out / f"rank{int(os.environ.get('LOCAL_RANK', 0))}_uneven.json").write_text(json.dumps(results))


if __name__ == "__main__":
    (ddp_uneven_main if sys.argv[2:] == ["uneven"] else ddp_main)(Path(sys.argv[1]))
