"""DistillationModule and the KD callbacks: teacher loading and freezing, loss terms, adapters, checkpoints, CLI."""

import argparse
import csv
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import REPO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from snn_lightning.cli import SNNLightningCLI, main
from snn_lightning.data import StaticImageDataModule
from snn_lightning.distill import (
    TSERKD,
    WSLDKD,
    BlurredFeatureKD,
    ClassicalKD,
    DistillationOutputs,
    FeatureKD,
    KDCallback,
    TeacherCheckpointError,
    feature_kd_loss,
    load_teacher,
    tser_terms,
    wsld_terms,
)
from snn_lightning.errors import CheckpointError, ConfigurationError
from snn_lightning.modules import ANNClassifier, DistillationModule, SNNClassifier

QUICKSTART_KD = str(REPO / "configs" / "quickstart_kd.yaml")


@pytest.fixture(scope="module")
def teacher_module():
    """An ANN ResNet-18 for the digits after one training step, with its data module."""
    L.seed_everything(0)
    teacher = ANNClassifier(arch="resnet18", num_classes=10, in_channels=1, stem="cifar")
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(teacher, datamodule=StaticImageDataModule(dataset="digits", batch_size=16))
    return trainer, teacher


@pytest.fixture(scope="module")
def teacher_file(teacher_module, tmp_path_factory):
    """A Lightning checkpoint of the teacher above."""
    path = tmp_path_factory.mktemp("teacher") / "best.ckpt"
    teacher_module[0].save_checkpoint(path)
    return path


def digits(batch_size=16):
    return StaticImageDataModule(dataset="digits", batch_size=batch_size)


def student(teacher_file, **kwargs):
    return DistillationModule(
        teacher_checkpoint=str(teacher_file),
        teacher_arch="resnet18",
        arch="resnet_mini",
        num_classes=10,
        in_channels=1,
        time_steps=2,
        width_multiplier=0.25,
        **kwargs,
    )


def trainer(tmp_path, callbacks=(), **kwargs):
    options = dict(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    options.update(kwargs)
    return L.Trainer(callbacks=list(callbacks), **options)


def optimizer_parameter_ids(fitted: L.Trainer) -> set[int]:
    return {id(p) for optimizer in fitted.optimizers for group in optimizer.param_groups for p in group["params"]}


# Teacher loading


def test_teacher_loads_from_a_lightning_checkpoint_or_a_state_dict(teacher_module, teacher_file, tmp_path):
    network = teacher_module[1].network
    torch.save(network.state_dict(), tmp_path / "resnet.pt")
    torch.save(teacher_module[1].state_dict(), tmp_path / "classifier.pt")  # keys "network.…"
    for path in (teacher_file, tmp_path / "resnet.pt", tmp_path / "classifier.pt"):
        teacher = load_teacher(str(path), "resnet18", num_classes=10, in_channels=1, stem="cifar")
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        for key, value in network.state_dict().items():
            torch.testing.assert_close(teacher.state_dict()[key], value)


def bad_file(kind, teacher_module, tmp_path):
    """Write a bad teacher file of ``kind`` (none for "missing"); return its path and the load arguments."""
    arguments = {"arch": "resnet18", "num_classes": 10, "in_channels": 1, "stem": "cifar"}
    mismatches = {"wrong_arch": {"arch": "resnet34"}, "classes": {"num_classes": 100}, "stem": {"stem": "imagenet"}}
    path = tmp_path / f"{kind}.ckpt"
    state = teacher_module[1].network.state_dict()
    if kind == "not_a_checkpoint":
        path.write_text("epoch,acc\n1,0.5\n")
    elif kind == "unsafe_pickle":
        torch.save(argparse.Namespace(lr=0.1), path)
    elif kind == "no_tensors":
        torch.save({"epoch": 3}, path)
    elif kind == "missing_key":
        torch.save({k: v for k, v in state.items() if k != "layer4.1.bn2.weight"}, path)
    elif kind == "extra_key":
        torch.save({**state, "projector.weight": torch.zeros(2)}, path)
    elif kind in mismatches:
        torch.save(state, path)
        arguments.update(mismatches[kind])
    return path, arguments


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist; set model.init_args.teacher_checkpoint"),
        ("not_a_checkpoint", "is not a PyTorch checkpoint that loads with weights_only=True"),
        ("unsafe_pickle", "is not a PyTorch checkpoint that loads with weights_only=True"),
        ("no_tensors", "holds neither a Lightning checkpoint nor a state_dict of tensors"),
        ("missing_key", "missing keys layer4.1.bn2.weight (1 in all); its stages are a resnet18's"),
        ("extra_key", "unexpected keys projector.weight (1 in all); its stages are a resnet18's"),
        ("wrong_arch", "its blocks 2/2/2/2 are a resnet18; set model.init_args.teacher_arch: resnet18"),
        ("classes", "has 10 classes but the data module has 100"),
        ("stem", "set model.init_args.teacher_stem"),
    ],
)
def test_bad_teacher_files_give_one_clear_error_each(kind, message, teacher_module, tmp_path):
    path, arguments = bad_file(kind, teacher_module, tmp_path)
    with pytest.raises(TeacherCheckpointError) as error:
        load_teacher(str(path), **arguments)
    assert isinstance(error.value, CheckpointError)
    assert message in str(error.value) and str(path) in str(error.value)


def test_instantiating_does_not_read_the_teacher_but_fit_does(tmp_path):
    model = student(tmp_path / "absent.ckpt")
    with pytest.raises(TeacherCheckpointError, match="absent.ckpt does not exist"):
        trainer(tmp_path, [TSERKD()]).fit(model, datamodule=digits())


# Frozen teacher, loss terms, logging


class TeacherProbe(L.Callback):
    """Records the teacher's mode and gradient flags at every training batch."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        teacher = pl_module.teacher
        self.seen.append((teacher.training, any(p.requires_grad for p in teacher.parameters())))


def test_fit_leaves_the_teacher_frozen_unchanged_and_outside_the_optimizer(teacher_file, tmp_path):
    model = student(teacher_file)
    before = {k: v.clone() for k, v in load_teacher(str(teacher_file), "resnet18", 10, 1, "cifar").state_dict().items()}
    probe = TeacherProbe()
    fitted = trainer(tmp_path, [TSERKD(), probe])
    fitted.fit(model, datamodule=digits())
    assert probe.seen == [(False, False), (False, False)]
    assert not model.teacher.training
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & optimizer_parameter_ids(fitted)
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert not any(key.startswith("teacher.") for key in model.state_dict())
    metrics = fitted.callback_metrics
    for name in ("train/ce_step", "train/kd_step", "train/entropy_step", "train/acc", "val/acc", "val/teacher_acc"):
        assert name in metrics, name
    total = metrics["train/ce_step"] + metrics["train/kd_step"] + metrics["train/entropy_step"]
    torch.testing.assert_close(metrics["train/loss_step"], total)
    assert metrics["train/entropy_step"] < 0  # the logged term is −λ·H, what the loss adds


def test_teacher_and_student_are_fed_the_very_same_batch(teacher_file, tmp_path):
    model = student(teacher_file)
    seen = {}
    model.network.stem.register_forward_pre_hook(  # the images repeated over T: a view of the batch
        lambda module, inputs: seen.setdefault("student", []).append(inputs[0])
    )
    model.teacher.conv1.register_forward_pre_hook(
        lambda module, inputs: seen.setdefault("teacher", []).append(inputs[0])
    )
    trainer(tmp_path, [TSERKD()], limit_val_batches=0).fit(model, datamodule=digits())
    batches = [steps for steps in seen["student"] if steps.shape[1] == 16]  # not the 1-image complexity probe
    assert len(batches) == len(seen["teacher"]) == 2
    for steps_student, images_teacher in zip(batches, seen["teacher"]):
        # One augmented, normalised tensor, not two draws of the augmentation.
        assert steps_student.data_ptr() == images_teacher.data_ptr()
        assert all(torch.equal(images, images_teacher) for images in steps_student)


def test_teacher_batchnorm_statistics_survive_a_fit(teacher_file, tmp_path):
    model = student(teacher_file)
    batchnorms = [m for m in model.teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in batchnorms]
    trainer(tmp_path, [ClassicalKD()], limit_train_batches=3).fit(model, datamodule=digits())
    for module, (mean, var, count) in zip(batchnorms, before):
        assert not module.training
        assert torch.equal(module.running_mean, mean) and torch.equal(module.running_var, var)
        assert torch.equal(module.num_batches_tracked, count)


def test_a_narrow_teacher_loads_with_its_width_and_a_wrong_width_names_the_fix(tmp_path):
    narrow = ANNClassifier(arch="resnet18", num_classes=10, in_channels=1, width_multiplier=0.25)
    torch.save(narrow.state_dict(), tmp_path / "narrow.pt")
    teacher = load_teacher(str(tmp_path / "narrow.pt"), "resnet18", 10, 1, "cifar", width_multiplier=0.25)
    assert teacher.fc.in_features == 128
    model = student(tmp_path / "narrow.pt", teacher_width_multiplier=0.25)
    assert model.teacher.fc.in_features == 128
    with pytest.raises(TeacherCheckpointError, match="set model.init_args.teacher_width_multiplier: 0.25"):
        load_teacher(str(tmp_path / "narrow.pt"), "resnet18", 10, 1, "cifar")


@pytest.mark.parametrize("standardize", [False, True])
def test_loss_terms_are_the_tser_terms(standardize, teacher_file, tmp_path):
    model = student(teacher_file)
    model.trainer = trainer(tmp_path, [TSERKD(alpha=0.3, tau=2.0, entropy_weight=0.05, standardize=standardize)])
    model.setup("fit")
    torch.manual_seed(0)
    s, t, y = torch.randn(2, 4, 10), torch.randn(4, 10), torch.randint(0, 10, (4,))
    outputs = DistillationOutputs(s, torch.rand(2, 4, 16, 4, 4), t, torch.rand(4, 512, 1, 1), y, 0.0)
    torch.testing.assert_close(model.loss_terms(outputs), tser_terms(s, t, y, 0.3, 2.0, 0.05, standardize=standardize))


def test_loss_terms_are_the_wsld_terms(teacher_file, tmp_path):
    model = student(teacher_file, label_smoothing=0.1)
    model.trainer = trainer(tmp_path, [WSLDKD(weight=2.5, tau=2.0)])
    model.setup("fit")
    torch.manual_seed(0)
    s, t, y = torch.randn(2, 4, 10), torch.randn(4, 10), torch.randint(0, 10, (4,))
    outputs = DistillationOutputs(s, torch.rand(2, 4, 16, 4, 4), t, torch.rand(4, 512, 1, 1), y, 0.1)
    torch.testing.assert_close(model.loss_terms(outputs), wsld_terms(s, t, y, 2.5, 2.0, label_smoothing=0.1))


def test_feature_kd_gets_its_adapter_built_from_the_channels_and_the_students_own_ce(teacher_file, tmp_path):
    model = student(teacher_file, label_smoothing=0.1, loss="per_step_ce")
    model.trainer = trainer(tmp_path, [FeatureKD(weight=0.5)])
    model.setup("fit")
    student_channels = model.network.fc.in_features
    adapter = model.distill_modules["FeatureKD"]
    assert (adapter.in_channels, adapter.out_channels) == (student_channels, 512)
    torch.manual_seed(0)
    s, y = torch.randn(2, 4, 10), torch.randint(0, 10, (4,))
    student_features, teacher_features = torch.rand(2, 4, student_channels, 4, 4), torch.rand(4, 512, 1, 1)
    outputs = DistillationOutputs(s, student_features, torch.randn(4, 10), teacher_features, y, 0.1)
    terms = model.loss_terms(outputs)
    assert list(terms) == ["ce", "feat"]
    torch.testing.assert_close(terms["ce"], model.loss(s, y))
    torch.testing.assert_close(terms["feat"], 0.5 * feature_kd_loss(student_features, teacher_features, adapter))


def test_only_the_logit_methods_replace_the_students_ce():
    methods = [ClassicalKD(), TSERKD(), WSLDKD(), FeatureKD(), BlurredFeatureKD()]
    assert [method.replaces_ce for method in methods] == [True, True, True, False, False]
    parts = BlurredFeatureKD().build(16, 32)
    assert parts["adapter"].in_channels == 16 and parts["generator"][0].in_channels == 32
    assert ClassicalKD().build(16, 32) is None


class UndeclaredCE(KDCallback):
    """A KD method that returns a ``ce`` term without declaring that it replaces the student's."""

    def loss_terms(self, outputs, parts):
        return {"ce": outputs.student_logits.mean()}


def test_a_ce_term_from_a_callback_that_does_not_replace_the_ce_is_an_error(teacher_file, tmp_path):
    model = student(teacher_file)
    model.trainer = trainer(tmp_path, [UndeclaredCE()])
    model.setup("fit")
    s, y = torch.randn(2, 4, 10), torch.randint(0, 10, (4,))
    outputs = DistillationOutputs(s, torch.rand(2, 4, 16, 4, 4), torch.randn(4, 10), torch.rand(4, 512, 1, 1), y, 0.0)
    with pytest.raises(
        ConfigurationError, match="UndeclaredCE.loss_terms returned a 'ce' term, but .*replaces_ce is Fal"
    ):
        model.loss_terms(outputs)


def test_bkdsnn_callbacks_fit_with_wsld_and_clipped_summed_blurred_features(teacher_file, tmp_path):
    callbacks = [WSLDKD(), BlurredFeatureKD(weight=7e-5, reduction="sum", use_clip=True)]
    fitted = trainer(tmp_path, callbacks, limit_val_batches=0)
    fitted.fit(student(teacher_file), datamodule=digits())
    for name in ("ce", "kd", "feat", "loss"):
        value = fitted.callback_metrics[f"train/{name}_step"]
        assert torch.isfinite(value) and value > 0, name


@pytest.mark.slow
def test_teacher_accuracy_is_logged_once_from_the_first_validation(teacher_file, tmp_path):
    data = digits()
    logger = CSVLogger(tmp_path, name="csv")
    options = dict(max_epochs=2, limit_train_batches=1, limit_val_batches=2, num_sanity_val_steps=1, logger=logger)
    fitted = trainer(tmp_path, [ClassicalKD()], **options)
    fitted.fit(student(teacher_file), datamodule=data)
    teacher = load_teacher(str(teacher_file), "resnet18", 10, 1, "cifar")
    correct = total = 0
    for index, (images, targets) in enumerate(data.val_dataloader()):
        if index == 2:
            break
        correct += (teacher(images).argmax(-1) == targets).sum().item()
        total += len(targets)
    with open(Path(logger.log_dir) / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows if row["val/acc"]] == ["0", "1"]
    (logged,) = [row for row in rows if row["val/teacher_acc"]]
    assert logged["epoch"] == "0" and float(logged["val/teacher_acc"]) == pytest.approx(correct / total)


def test_without_kd_callbacks_the_student_trains_as_an_snn_classifier(teacher_file, tmp_path):
    distilled = student(teacher_file)
    plain = SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, time_steps=2, width_multiplier=0.25)
    plain.network.load_state_dict(distilled.network.state_dict())
    for model in (distilled, plain):
        L.seed_everything(1)
        fitted = trainer(tmp_path, limit_val_batches=0)
        fitted.fit(model, datamodule=digits())
        assert "train/loss_step" in fitted.callback_metrics and "train/kd_step" not in fitted.callback_metrics
    for key, value in distilled.network.state_dict().items():
        torch.testing.assert_close(value, plain.network.state_dict()[key])


def test_teacher_needs_static_images(teacher_file):
    with pytest.raises(ConfigurationError, match=r"needs static images \[B, C, H, W\].*shape \(2, 3, 1, 8, 8\)"):
        student(teacher_file).teacher_outputs(torch.rand(2, 3, 1, 8, 8))


# Configuration errors


@pytest.mark.parametrize(
    "callbacks, message",
    [
        ([ClassicalKD(), TSERKD()], "two logit-KD methods \\(ClassicalKD and TSERKD\\)"),
        ([ClassicalKD(), WSLDKD()], "two logit-KD methods \\(ClassicalKD and WSLDKD\\)"),
        ([FeatureKD(), FeatureKD()], "lists FeatureKD more than once"),
    ],
)
def test_conflicting_kd_callbacks_are_configuration_errors(callbacks, message, teacher_file, tmp_path):
    with pytest.raises(ConfigurationError, match=message):
        trainer(tmp_path, callbacks).fit(student(teacher_file), datamodule=digits())


def test_kd_callback_on_a_plain_snn_is_a_configuration_error(tmp_path):
    model = SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, time_steps=2, width_multiplier=0.25)
    with pytest.raises(ConfigurationError, match="model is SNNClassifier; set model.class_path: .*DistillationModule"):
        trainer(tmp_path, [TSERKD()]).fit(model, datamodule=digits())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TSERKD(alpha=1.5), "TSERKD.alpha is 1.5"),
        (lambda: ClassicalKD(tau=0.0), "ClassicalKD.tau is 0.0"),
        (lambda: FeatureKD(weight=-1.0), "FeatureKD.weight is -1.0"),
        (lambda: BlurredFeatureKD(mask_ratio=1.0), "BlurredFeatureKD.mask_ratio is 1.0"),
        (lambda: WSLDKD(tau=0.0), "WSLDKD.tau is 0.0; set it > 0"),
        (lambda: WSLDKD(weight=-1.0), "WSLDKD.weight is -1.0; set it >= 0"),
        (lambda: FeatureKD(reduction="Sum"), "FeatureKD.reduction is 'Sum'; set it to 'mean' .* or 'sum'"),
        (lambda: BlurredFeatureKD(reduction="none"), "BlurredFeatureKD.reduction is 'none'; set it to 'mean'"),
    ],
)
def test_callback_arguments_are_checked(make, message):
    with pytest.raises(ConfigurationError, match=message):
        make()


# Feature KD modules, checkpoints and resuming


class RestoredState(L.Callback):
    """Copies the module's state at the start of training (after setup and any checkpoint restore)."""

    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.parametrize("feature_kd", [FeatureKD, BlurredFeatureKD])
def test_feature_kd_modules_are_trained_and_checkpointed_without_the_teacher(feature_kd, teacher_file, tmp_path):
    model = student(teacher_file)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    initial = RestoredState()
    fitted = trainer(tmp_path, [TSERKD(), feature_kd(), checkpoint, initial], enable_checkpointing=True)
    fitted.fit(model, datamodule=digits())
    prefix = f"distill_modules.{feature_kd.__name__}."
    parts = model.distill_modules[feature_kd.__name__]
    assert {id(p) for p in parts.parameters()} <= optimizer_parameter_ids(fitted)
    for name, parameter in parts.named_parameters():
        assert not torch.equal(parameter, initial.state[prefix + name]), f"{name} was not trained"
    assert {"train/feat_step", "train/kd_step"} <= set(fitted.callback_metrics)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in parts.state_dict(prefix=prefix).items():
        torch.testing.assert_close(saved[key], value)
    assert not any(key.startswith("teacher.") for key in saved)


@pytest.mark.slow
def test_resuming_a_distillation_run(teacher_file, tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    first = trainer(tmp_path, [TSERKD(), FeatureKD(), checkpoint], enable_checkpointing=True)
    first.fit(student(teacher_file), datamodule=digits())
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)["state_dict"]
    restored = RestoredState()
    second = trainer(tmp_path, [TSERKD(), FeatureKD(), restored], max_epochs=2)
    second.fit(student(teacher_file), datamodule=digits(), ckpt_path=str(last))
    assert second.current_epoch == 2 and second.global_step == 2 * first.global_step
    assert set(restored.state) == set(saved)
    for key, value in saved.items():
        torch.testing.assert_close(restored.state[key], value)


def test_saving_the_teacher_makes_the_checkpoint_self_contained(teacher_file, tmp_path):
    copy = tmp_path / "teacher.ckpt"
    copy.write_bytes(teacher_file.read_bytes())
    model = student(copy, save_teacher_in_checkpoint=True)
    trainer(tmp_path, [ClassicalKD()], limit_val_batches=0).fit(model, datamodule=digits())
    model.trainer.save_checkpoint(tmp_path / "student.ckpt")
    copy.unlink()
    saved = torch.load(tmp_path / "student.ckpt", weights_only=True)["state_dict"]
    assert any(key.startswith("teacher.") for key in saved)
    loaded = DistillationModule.load_from_checkpoint(tmp_path / "student.ckpt", weights_only=True)
    for key, value in model.teacher.state_dict().items():
        torch.testing.assert_close(loaded.teacher.state_dict()[key], value)
    for key, value in model.network.state_dict().items():
        torch.testing.assert_close(loaded.network.state_dict()[key], value)


def test_student_checkpoint_loads_for_evaluation_without_teacher_or_kd_modules(teacher_file, tmp_path):
    model = student(teacher_file)
    trainer(tmp_path, [TSERKD(), BlurredFeatureKD()], limit_val_batches=0).fit(model, datamodule=digits())
    model.trainer.save_checkpoint(tmp_path / "student.ckpt")
    loaded = DistillationModule.load_from_checkpoint(
        tmp_path / "student.ckpt", teacher_checkpoint=str(tmp_path / "gone.ckpt"), weights_only=True
    )
    assert len(loaded.distill_modules) == 0
    (metrics,) = trainer(tmp_path, limit_test_batches=1).test(loaded, datamodule=digits())
    assert 0.0 <= metrics["test/acc"] <= 1.0
    (metrics,) = trainer(tmp_path).validate(loaded, datamodule=digits())
    assert "val/acc" in metrics and "val/teacher_acc" not in metrics


def test_bf16_mixed_precision_distillation_trains(teacher_file, tmp_path):
    fitted = trainer(tmp_path, [TSERKD(), FeatureKD()], precision="bf16-mixed", limit_val_batches=0)
    fitted.fit(student(teacher_file), datamodule=digits())
    assert torch.isfinite(fitted.callback_metrics["train/loss_step"])


# Command line


def cli(args):
    return SNNLightningCLI(
        args=args,
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
    )


@pytest.mark.slow
def test_quickstart_kd_config_fits_and_tests_from_the_command_line(teacher_file, in_tmp_dir):
    fitted = cli(
        [
            "fit",
            "--config",
            QUICKSTART_KD,
            "--model.teacher_checkpoint",
            str(teacher_file),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
        ]
    )
    assert {"train/kd_step", "train/entropy_step", "val/teacher_acc"} <= set(fitted.trainer.callback_metrics)
    last = in_tmp_dir / "logs" / "quickstart_kd" / "latest" / "checkpoints" / "last.ckpt"
    tested = cli(["test", "--config", QUICKSTART_KD, "--ckpt_path", str(last), "--trainer.limit_test_batches", "1"])
    assert "test/acc" in tested.trainer.callback_metrics


def test_missing_teacher_checkpoint_on_the_command_line(in_tmp_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", QUICKSTART_KD, "--trainer.fast_dev_run", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert str(in_tmp_dir / "logs/quickstart_kd_teacher/latest/checkpoints/best.ckpt") + " does not exist" in err


def resolved_config(path, capsys):
    """Return the config ``snn-lightning fit --config path --print_config`` prints, as a dict."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_a_kd_config_names_only_its_method_and_keeps_the_base_configs_callbacks(teacher_file, in_tmp_dir, capsys):
    config = REPO / "configs" / "tser_resnet19_cifar100.yaml"
    assert "trainer.callbacks" not in config.read_text()
    base = yaml.safe_load((REPO / "configs" / "base" / "kd_resnet19_cifar100.yaml").read_text())
    observability = {entry["class_path"].rpartition(".")[2] for entry in base["trainer"]["callbacks"]}
    assert {"SpikeStats", "EnergyEstimate", "PerStepAccuracy"} <= observability
    resolved = resolved_config(config, capsys)
    assert [entry["class_path"] for entry in resolved["model"]["init_args"]["distillation"]] == [
        "snn_lightning.distill.TSERKD"
    ]
    assert [entry["class_path"].rpartition(".")[2] for entry in resolved["trainer"]["callbacks"]] == [
        entry["class_path"].rpartition(".")[2] for entry in base["trainer"]["callbacks"]
    ]
    # The CIFAR-100 recipe, shrunk to the digits and the small teacher of these tests.
    small = {
        "model.teacher_checkpoint": str(teacher_file),
        "model.teacher_arch": "resnet18",
        "model.arch": "resnet_mini",
        "model.width_multiplier": "0.25",
        "data.dataset": "digits",
        "data.batch_size": "16",
        "data.val_fraction": "0.1",
        "data.auto_augment": "false",
        "data.cutout": "0",
        "data.pin_memory": "false",
        "trainer.logger": "lightning.pytorch.loggers.CSVLogger",
        "trainer.logger.save_dir": "logs/tser_resnet19_cifar100",
        "trainer.precision": "32-true",
        "trainer.accelerator": "cpu",
        "trainer.devices": "1",
        "trainer.max_epochs": "1",
        "trainer.limit_train_batches": "2",
        "trainer.limit_val_batches": "1",
        "trainer.num_sanity_val_steps": "0",
    }
    fitted = cli(
        ["fit", "--config", str(config), *[part for key, value in small.items() for part in (f"--{key}", value)]]
    )
    callbacks = fitted.trainer.callbacks
    assert sum(isinstance(callback, TSERKD) for callback in callbacks) == 1
    assert observability <= {type(callback).__name__ for callback in callbacks}
    metrics = fitted.trainer.callback_metrics
    assert {"train/ce_step", "train/kd_step", "train/entropy_step", "val/teacher_acc"} <= set(metrics)
    assert {"val/acc_t1", "val/firing_rate"} <= set(metrics)  # PerStepAccuracy and SpikeStats ran


def test_kd_methods_given_to_the_module_and_to_the_trainer_combine(teacher_file, tmp_path):
    model = student(teacher_file, distillation=[TSERKD()])
    assert "distillation" not in model.hparams  # objects are not pickled into checkpoints
    fitted = trainer(tmp_path, [FeatureKD()], limit_val_batches=0)
    fitted.fit(model, datamodule=digits())
    assert {"train/kd_step", "train/entropy_step", "train/feat_step"} <= set(fitted.callback_metrics)
    assert set(model.distill_modules) == {"FeatureKD"}
    fitted.save_checkpoint(tmp_path / "student.ckpt")
    loaded = DistillationModule.load_from_checkpoint(tmp_path / "student.ckpt", weights_only=True)
    assert loaded.distillation == []  # the methods are a fit's setting, given again to continue one
    with pytest.raises(ConfigurationError, match=r"model.distillation \(with trainer.callbacks\) lists two logit-KD"):
        trainer(tmp_path, [ClassicalKD()]).fit(student(teacher_file, distillation=[TSERKD()]), datamodule=digits())
