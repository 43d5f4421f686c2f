"""LightningModules: loss choice, time steps at evaluation, optimizer defaults, prediction."""

import logging
import math

import lightning as L
import pytest
import torch

from snn_lightning.data import StaticImageDataModule, load_digits
from snn_lightning.errors import ConfigurationError
from snn_lightning.losses import mean_ce, per_step_ce
from snn_lightning.modules import ANNClassifier, SNNClassifier
from snn_lightning.modules.schedule import start_schedule
from snn_lightning.neurons import PLIF


def small_snn(**kwargs):
    return SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, width_multiplier=0.25, **kwargs)


@pytest.mark.parametrize("loss, function", [("mean_ce", mean_ce), ("per_step_ce", per_step_ce)])
def test_loss_choice_and_label_smoothing(loss, function):
    torch.manual_seed(0)
    model = small_snn(loss=loss, label_smoothing=0.1)
    outputs = torch.randn(4, 3, 10)
    targets = torch.tensor([1, 2, 3])
    torch.testing.assert_close(model.loss(outputs, targets), function(outputs, targets, 0.1))


def test_eval_time_steps_runs_the_first_steps_outside_training_only():
    torch.manual_seed(0)
    model = small_snn(time_steps=4, eval_time_steps=2)
    images, frames = torch.rand(3, 1, 8, 8), torch.rand(4, 3, 1, 8, 8)
    assert model.train().active_time_steps == 4 and model(images).shape == (4, 3, 10)
    model.eval()
    full = model.network(images)  # the network itself always runs its own 4 steps
    assert model.active_time_steps == 2 and model.network.time_steps == 4
    torch.testing.assert_close(model(images), full[:2])
    torch.testing.assert_close(model(frames), model.network(frames)[:2])  # clips cut to their first 2 frames
    assert "eval_time_steps" not in model.hparams  # how one process evaluates, not part of the trained model


@pytest.mark.parametrize("bad", [0, 5])
def test_eval_time_steps_outside_one_to_time_steps_is_rejected(bad):
    with pytest.raises(ConfigurationError, match=f"model.eval_time_steps is {bad} but the network runs time_steps=4"):
        small_snn(time_steps=4, eval_time_steps=bad)


def test_frames_that_do_not_match_the_steps_are_a_clear_error():
    model = small_snn(time_steps=4).train()
    with pytest.raises(ConfigurationError, match="the data gives 3 frames per clip but the model trains 4 time steps"):
        model(torch.rand(3, 2, 1, 8, 8))
    model.eval()
    with pytest.raises(ConfigurationError, match="evaluate at fewer steps with --model.eval_time_steps 3"):
        model(torch.rand(3, 2, 1, 8, 8))
    assert model(torch.rand(6, 2, 1, 8, 8)).shape == (4, 2, 10)  # longer clips: the first 4 frames


def test_time_steps_below_one_is_rejected():
    with pytest.raises(ConfigurationError, match="time_steps must be >= 1, got 0"):
        small_snn(time_steps=0)


def test_prediction_is_argmax_of_the_time_mean():
    model = small_snn().eval()
    outputs = torch.tensor([[[0.0, 5.0] + [0.0] * 8], [[3.0, -4.0] + [0.0] * 8]])
    assert model.class_logits(outputs).argmax(-1).item() == 0  # mean (1.5, 0.5): step 1 alone says 1
    result = model.predict_step((torch.rand(5, 1, 8, 8), torch.zeros(5)), 0)
    assert result["prediction"].shape == (5,)
    torch.testing.assert_close(result["probabilities"].sum(-1), torch.ones(5))


def test_neuron_template_is_used_in_every_layer():
    model = small_snn(neuron=PLIF(init_tau=3.0))
    plifs = [m for m in model.modules() if isinstance(m, PLIF)]
    assert len(plifs) >= 5
    assert all(abs(p.tau - 3.0) < 1e-5 for p in plifs)
    assert len({id(p.w) for p in plifs}) == len(plifs)


def test_default_optimizer_is_sgd_with_cosine_to_zero_over_every_step(tmp_path):
    _, configured = configured_with(tmp_path, max_epochs=7)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.1 and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 5e-4
    assert start_schedule(scheduler, 70) == "step", "a short run stepped per epoch never goes below half the rate"
    rates = run_schedule(optimizer, scheduler, 70)
    assert rates[0] == pytest.approx(0.1) and rates[35] == pytest.approx(0.05)
    assert rates[69] == pytest.approx(0.05 * (1 + math.cos(math.pi * 69 / 70)))


def test_without_a_step_count_the_default_schedule_steps_per_epoch(tmp_path):
    _, configured = configured_with(tmp_path, max_epochs=4)
    scheduler = configured["lr_scheduler"]["scheduler"]
    assert start_schedule(scheduler, float("inf")) == "epoch"  # an iterable dataset without a length
    rates = run_schedule(configured["optimizer"], scheduler, 4)
    assert rates == pytest.approx([0.1, 0.05 * (1 + 0.5**0.5), 0.05, 0.05 * (1 - 0.5**0.5)])


def test_a_resumed_schedule_starts_at_the_rate_of_its_step(tmp_path):
    _, configured = configured_with(tmp_path, max_epochs=2)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    state = scheduler.state_dict()
    state["last_epoch"] = 5  # as restored from a checkpoint written after 5 of 10 steps
    scheduler.load_state_dict(state)
    start_schedule(scheduler, 10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05) and scheduler.get_last_lr() == pytest.approx([0.05])


def test_configured_optimizer_and_scheduler_factories_are_used():
    model = small_snn(
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3),
    )
    configured = model.configure_optimizers()
    assert isinstance(configured["optimizer"], torch.optim.Adam)
    assert configured["lr_scheduler"]["scheduler"].step_size == 3


def configured_with(tmp_path, max_epochs: int, **kwargs):
    """Return ``configure_optimizers()`` of a small SNN attached to a trainer of ``max_epochs``."""
    model = small_snn(**kwargs)
    model.trainer = L.Trainer(
        max_epochs=max_epochs, logger=False, enable_checkpointing=False, default_root_dir=tmp_path
    )
    return model, model.configure_optimizers()


def run_schedule(optimizer, scheduler, steps: int) -> list[float]:
    """Return the learning rate of each of ``steps`` optimizer steps."""
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warm_up_then_cosine_by_hand(tmp_path):
    _, configured = configured_with(tmp_path, max_epochs=6, warmup_epochs=2)
    scheduler = configured["lr_scheduler"]["scheduler"]
    start_schedule(scheduler, 12)  # 2 steps per epoch
    rates = run_schedule(configured["optimizer"], scheduler, 12)
    # 0.1 × (1/5 … 4/5) over the 4 warm-up steps, then 0.1 × ½(1 + cos(π s/8)) for s = 0..7.
    expected = [0.1 * k / 5 for k in range(1, 5)] + [0.05 * (1 + math.cos(math.pi * s / 8)) for s in range(8)]
    assert rates == pytest.approx(expected)


def test_warm_up_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigurationError, match="warmup_epochs must be >= 0, got -1"):
        small_snn(warmup_epochs=-1)
    with pytest.raises(ConfigurationError, match=r"warmup_epochs \(3\) must be below trainer.max_epochs \(3\)"):
        configured_with(tmp_path, max_epochs=3, warmup_epochs=3)
    step = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3)  # noqa: E731
    with pytest.raises(
        ConfigurationError, match="applies to the default cosine schedule only; remove model.lr_scheduler"
    ):
        configured_with(tmp_path, max_epochs=5, warmup_epochs=1, lr_scheduler=step)


def test_norms_biases_neuron_parameters_and_position_encodings_get_no_weight_decay(tmp_path):
    from snn_lightning.models import STAA

    model, configured = configured_with(tmp_path, max_epochs=2, neuron=STAA(), exempt_from_weight_decay=True)
    decayed, exempt = configured["optimizer"].param_groups
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (5e-4, 0.0)
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    exempt_names = {names[id(parameter)] for parameter in exempt["params"]}
    decayed_names = {names[id(parameter)] for parameter in decayed["params"]}
    assert len(exempt_names) + len(decayed_names) == len(names)
    suffixes = lambda group: {name.rsplit(".", 1)[-1] for name in group}  # noqa: E731
    assert suffixes(exempt_names) == {"bias", "weight", "encoding", "leak_logit", "input_scale"}
    assert all(parameter.ndim <= 1 or names[id(parameter)].endswith("encoding") for parameter in exempt["params"])
    assert suffixes(decayed_names) == {"weight"} and all(parameter.ndim >= 2 for parameter in decayed["params"])
    _, plain = configured_with(tmp_path, max_epochs=2)
    assert len(plain["optimizer"].param_groups) == 1


def test_a_layer_names_its_own_parameters_free_of_weight_decay():
    from snn_lightning.modules.base import weight_decay_groups

    class Table(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rows, self.mixing = torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(4, 4))

        def no_weight_decay(self) -> set[str]:
            return {"rows"}

    network = torch.nn.Sequential(torch.nn.Linear(4, 4), Table())
    decayed, exempt = weight_decay_groups(network)
    assert [p is network[0].weight or p is network[1].mixing for p in decayed["params"]] == [True, True]
    assert {id(p) for p in exempt["params"]} == {id(network[0].bias), id(network[1].rows)}


def test_soft_targets_train_and_are_scored_by_their_most_probable_class():
    torch.manual_seed(0)
    outputs, labels = torch.randn(4, 3, 10), torch.tensor([1, 2, 3])
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    for loss in (mean_ce, per_step_ce):
        torch.testing.assert_close(loss(outputs, one_hot, 0.1), loss(outputs, labels, 0.1))
    model = small_snn()
    mixed = 0.6 * one_hot + 0.4 * one_hot.roll(1, 0)
    model.log_loss_and_accuracy("train", torch.tensor(1.0), outputs.mean(0), mixed)
    assert model.accuracy["train_1"].compute() == (outputs.mean(0).argmax(-1) == labels).float().mean()


def test_training_steps_lower_the_loss_on_one_batch():
    torch.manual_seed(0)
    model = SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, width_multiplier=0.5)
    images, targets = (torch.from_numpy(array[:32]) for array in load_digits("train"))
    images = (images - 0.3) / 0.38
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.loss(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ann_classifier_logits_and_loss():
    model = ANNClassifier(arch="resnet18", num_classes=7, in_channels=3, stem="cifar")
    outputs = model(torch.rand(2, 3, 32, 32))
    assert outputs.shape == (2, 7)
    targets = torch.tensor([0, 6])
    torch.testing.assert_close(model.loss(outputs, targets), torch.nn.functional.cross_entropy(outputs, targets))
    assert torch.equal(model.class_logits(outputs), outputs)


def test_a_fit_moves_the_default_schedule_at_every_step(tmp_path):
    rates = []

    class RecordRate(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = small_snn()
    data = StaticImageDataModule(dataset="digits", batch_size=16)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[RecordRate()],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    assert rates == pytest.approx([0.05 * (1 + math.cos(math.pi * step / 6)) for step in range(6)])


def test_lr_reference_batch_scales_the_lr_linearly_to_the_global_batch(tmp_path, caplog):
    rates = []

    class RecordRate(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    # lr 0.1 is for 128 samples per step; this fit steps 16 per batch x 2 accumulated = 32: lr 0.025 at the start.
    model = small_snn(lr_reference_batch=128)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=0,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[RecordRate()],
        default_root_dir=tmp_path,
    )
    with caplog.at_level(logging.INFO):
        trainer.fit(model, datamodule=StaticImageDataModule(dataset="digits", batch_size=16))
    assert (
        "learning rate 0.025: the config's lr for a global batch of 128 (model.lr_reference_batch) scaled x0.25"
        in caplog.text
    )
    # Two optimizer steps of cosine from 0.025: 0.025 for both batches of the first step, then 0.0125.
    assert rates == pytest.approx([0.025, 0.025, 0.0125, 0.0125])
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == pytest.approx([0.025])


def test_lr_reference_batch_errors_and_an_lr_set_on_the_module_is_not_scaled(tmp_path):
    with pytest.raises(ConfigurationError, match="lr_reference_batch must be a positive batch size, got 0"):
        small_snn(lr_reference_batch=0)
    with pytest.raises(ConfigurationError, match="needs a data module with an integer batch_size"):
        configured_with(tmp_path, max_epochs=2, lr_reference_batch=128)  # no data module attached
    model = small_snn(lr_reference_batch=128)
    model.lr = 0.3  # as Lightning's LR finder sets it, for this run's batch already
    model.trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    assert model.configure_optimizers()["optimizer"].param_groups[0]["lr"] == 0.3


@pytest.mark.slow
def test_compile_trains_the_network_through_torch_compile_to_the_eager_weights(tmp_path):
    def fit_two_steps(compile: bool) -> SNNClassifier:
        torch.manual_seed(0)
        model = small_snn(compile=compile)
        trainer = L.Trainer(
            max_steps=2,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            default_root_dir=tmp_path,
        )
        trainer.fit(model, datamodule=StaticImageDataModule(dataset="digits", batch_size=16, num_workers=0))
        return model

    eager, compiled = fit_two_steps(False), fit_two_steps(True)
    assert compiled.network._compiled_call_impl is not None and eager.network._compiled_call_impl is None
    assert compiled.state_dict().keys() == eager.state_dict().keys(), "checkpoints keep their keys"
    for name, weight in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    images = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled.eval()(images), eager.eval()(images), rtol=1e-4, atol=1e-5)
