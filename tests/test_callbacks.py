"""Callbacks: firing rates, energy and per-step accuracy checked by hand; hooks only during evaluation; plots saved."""

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snn_lightning.callbacks import (
    COST_PRESETS,
    EnergyCosts,
    EnergyEstimate,
    LayerActivity,
    PerStepAccuracy,
    PlotCallback,
    SpikeStats,
    estimate_energy,
    running_mean_logits,
)
from snn_lightning.layers import DirectEncoder, TimeDistributed
from snn_lightning.losses import mean_ce
from snn_lightning.modules import ClassifierModule
from snn_lightning.neurons import LIF

# Two 2×2 one-channel images. Through a 1×1 conv with weights (1.0, 0.4) and LIF(tau=2), T=2, the
# currents 4 → 2 spikes, 1.5 → 1 spike (t=2), 1.6 (= 4 × 0.4) → 1 spike; the rest stay silent:
# 4 spikes out of T·C·H·W·B = 2·2·4·2 = 32 outputs, firing rate 1/8. The zero image fires nothing.
IMAGES = torch.tensor([[[[4.0, 0.0], [1.5, 0.5]]], [[[0.0, 0.0], [0.0, 0.0]]]])
LABELS = torch.tensor([0, 1])


class ConvLIFLinear(ClassifierModule):
    """Direct encoding → 1×1 conv (1 → 2 channels) → LIF → linear (8 → 3): the two-layer model counted by hand."""

    def __init__(self, time_steps: int = 2, in_channels: int = 1) -> None:
        super().__init__(num_classes=3, optimizer=None, lr_scheduler=None)
        self.encoder = DirectEncoder(time_steps)
        self.conv = TimeDistributed(nn.Conv2d(in_channels, 2, kernel_size=1, bias=False))
        self.lif = LIF(tau=2.0)
        self.fc = nn.Linear(8, 3)
        with torch.no_grad():
            self.conv.module.weight.zero_()
            self.conv.module.weight[:, 0] = torch.tensor([1.0, 0.4]).view(2, 1, 1)
            self.fc.weight.fill_(0.1)
            self.fc.bias.zero_()

    @property
    def active_time_steps(self) -> int:
        return self.encoder.time_steps

    def forward(self, images):
        sequence = images if images.ndim == 5 else self.encoder(images)
        return self.fc(self.lif(self.conv(sequence)).flatten(2))

    def loss(self, outputs, targets):
        return mean_ce(outputs, targets, 0.0)

    def class_logits(self, outputs):
        return outputs.mean(0)


def loader(images=IMAGES, labels=LABELS, batch_size=1):
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


def trainer(tmp_path, callbacks, **kwargs):
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    options.update(kwargs)
    return L.Trainer(default_root_dir=tmp_path, callbacks=callbacks, enable_model_summary=False, **options)


def test_firing_rate_equals_the_hand_count(tmp_path):
    stats = SpikeStats()
    (metrics,) = trainer(tmp_path, [stats]).validate(ConvLIFLinear(), loader())
    assert metrics["val/firing_rate/lif"] == pytest.approx(4 / 32)
    assert metrics["val/firing_rate"] == pytest.approx(4 / 32)
    assert stats.table == {"lif": pytest.approx(4 / 32)}


def test_energy_of_the_two_layer_model_by_hand(tmp_path):
    energy = EnergyEstimate()
    run = trainer(tmp_path, [energy], logger=CSVLogger(tmp_path))
    (metrics,) = run.test(ConvLIFLinear(), loader())
    # conv: 1·(2·2)·1·2 = 8 MACs per step on the real-valued image (mean value 12/16), repeated over T, so counted once.
    # fc: 8·3 = 24 MACs per step on spikes with input firing rate 1/8: SOPs = 1/8 · T=2 · 24 = 6 per sample.
    assert energy.layers["conv.module"] == LayerActivity(
        macs=8, input_rate=12 / 16, input_kind="encoding", repeated_input=True, weights=2, inputs=4, outputs=8
    )
    assert energy.layers["fc"] == LayerActivity(
        macs=24, input_rate=1 / 8, input_kind="spikes", repeated_input=False, weights=27, inputs=8, outputs=3
    )
    assert metrics["test/sops"] == pytest.approx(6)
    assert metrics["test/energy_mj"] == pytest.approx((4.6 * 8 + 0.9 * 6) * 1e-9)
    assert metrics["test/ann_energy_mj"] == pytest.approx(4.6 * (8 + 24) * 1e-9)
    # Memory traffic in bits (32-bit words, T=2), at 10/64 pJ per bit:
    # conv: weights 2·2·32 + the repeated image once 4·32 + membrane read/write 2·2·8·32 = 1280;
    # fc: weights 2·27·32 + spikes 2·8·1 + partial sums 2·2·3·32 = 2128. ANN: (2+4+8)·32 + (27+8+3)·32 = 1664.
    assert metrics["test/energy_with_memory_mj"] == pytest.approx((4.6 * 8 + 0.9 * 6 + (1280 + 2128) * 10 / 64) * 1e-9)
    assert metrics["test/ann_energy_with_memory_mj"] == pytest.approx((4.6 * 32 + 1664 * 10 / 64) * 1e-9)
    assert "conv.module (once: same input at every step)" in energy.rule()
    assert [line.split()[:2] for line in energy.report.table().splitlines()[1:]] == [
        ["conv.module", "MAC"],
        ["fc", "AC"],
    ]
    written = Path(run.log_dir) / "energy_per_layer.txt"
    assert written.read_text() == f"{energy.rule()}\n\n{energy.report.table()}\n"


class ConvLIFPoolConv(ConvLIFLinear):
    """Direct encoding → 1×1 conv (weight 1) → LIF → 2×2 average pool → 1×1 conv (1 → 3): pooled spikes by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = TimeDistributed(nn.Conv2d(1, 1, kernel_size=1, bias=False))
        self.pool = TimeDistributed(nn.AvgPool2d(2))
        self.head = TimeDistributed(nn.Conv2d(1, 3, kernel_size=1, bias=False))
        nn.init.ones_(self.conv.module.weight)

    def forward(self, images):
        return self.head(self.pool(self.lif(self.conv(self.encoder(images))))).flatten(2)


@pytest.mark.parametrize("pooled_spikes", ["ac", "mac"])
def test_a_conv_after_pooled_spikes_is_charged_by_the_chosen_rule(tmp_path, pooled_spikes):
    energy = EnergyEstimate(pooled_spikes=pooled_spikes)
    (metrics,) = trainer(tmp_path, [energy]).test(ConvLIFPoolConv(), loader())
    # Image 1 [4, 0; 1.5, 0.5] spikes [1, 0; 0, 0] at t=1 and [1, 0; 1, 0] at t=2; image 2 never fires.
    # The pool gives 0.25 and 0.5 (image 1), 0 and 0 (image 2): mean 0.1875 = the pooled spikes' firing rate.
    head = energy.layers["head.module"]
    assert (head.input_kind, head.input_rate, head.macs) == ("pooled_spikes", pytest.approx(0.1875), 3)
    stem = 4.6 * 4  # 4 MACs per step, once (repeated image)
    if pooled_spikes == "ac":  # SOPs = 0.1875 · T=2 · 3
        assert metrics["test/sops"] == pytest.approx(1.125)
        assert metrics["test/energy_mj"] == pytest.approx((stem + 0.9 * 1.125) * 1e-9)
    else:  # 3 MACs at each of the 2 steps
        assert metrics["test/sops"] == 0
        assert metrics["test/energy_mj"] == pytest.approx((stem + 4.6 * 6) * 1e-9)
    assert metrics["test/ann_energy_mj"] == pytest.approx(4.6 * 7 * 1e-9)
    assert "pooled-spike-input layers [head.module]" in energy.rule()


def test_layer_kinds_and_operations_by_hand():
    layers = {
        "stem": LayerActivity(macs=10, input_rate=0.3, input_kind="encoding", repeated_input=False),
        "attention": LayerActivity(macs=5, input_rate=0.9, input_kind="real", repeated_input=False),
        "conv": LayerActivity(macs=20, input_rate=0.5, input_kind="spikes", repeated_input=False),
        "fc": LayerActivity(macs=8, input_rate=0.25, input_kind="pooled_spikes", repeated_input=False),
    }
    report = estimate_energy(layers, time_steps=4, costs=COST_PRESETS["int8"])
    assert [layer.charged_as for layer in report.layers.values()] == ["MAC", "MAC", "AC", "AC"]
    assert (report.macs, report.sops, report.ann_macs) == (60, 40 + 8, 43)
    assert report.energy_pj == pytest.approx(0.23 * 60 + 0.03 * 48)
    assert report.ann_energy_pj == pytest.approx(0.23 * 43)
    as_macs = estimate_energy(layers, time_steps=4, costs=COST_PRESETS["int8"], pooled_spikes="mac")
    assert (as_macs.macs, as_macs.sops) == (60 + 32, 40)
    with pytest.raises(ValueError, match="pooled_spikes must be 'ac' .*or 'mac', got 'sop'"):
        estimate_energy(layers, time_steps=4, costs=COST_PRESETS["int8"], pooled_spikes="sop")


def test_energy_preset_and_module_are_checked(tmp_path):
    assert EnergyEstimate("fp16").costs == EnergyCosts(1.5, 0.4, 16)
    with pytest.raises(ValueError, match="preset must be one of .*got 'fp64'"):
        EnergyEstimate("fp64")
    with pytest.raises(ValueError, match="pooled_spikes must be 'ac' .*got 'none'"):
        EnergyEstimate(pooled_spikes="none")
    with pytest.raises(
        ValueError, match="EnergyEstimate needs a spiking module with active_time_steps .*got FixedLogits"
    ):
        trainer(tmp_path, [EnergyEstimate()]).test(FixedLogits(), loader(torch.zeros(2, 3, 2)))


class FixedLogits(ClassifierModule):
    """Returns its input ``[B, T, C]`` as per-step logits ``[T, B, C]``."""

    def __init__(self) -> None:
        super().__init__(num_classes=2, optimizer=None, lr_scheduler=None)

    def forward(self, images):
        return images.transpose(0, 1)

    def loss(self, outputs, targets):
        return mean_ce(outputs, targets, 0.0)

    def class_logits(self, outputs):
        return outputs.mean(0)


def test_per_step_accuracy_by_hand(tmp_path):
    logits = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]],  # target 0: right at t=1 only
            [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]],  # target 1: always right
            [[0.0, 1.0], [2.0, 0.0], [2.0, 0.0]],  # target 0: right from t=2
            [[1.0, 0.0], [1.0, 0.0], [0.0, 5.0]],  # target 1: right at t=3
        ]
    )
    callback = PerStepAccuracy()
    (metrics,) = trainer(tmp_path, [callback]).validate(FixedLogits(), loader(logits, torch.tensor([0, 1, 0, 1]), 2))
    assert [metrics[f"val/acc_t{t}"] for t in (1, 2, 3)] == pytest.approx([0.5, 0.5, 0.75])
    assert metrics["val/acc"] == pytest.approx(0.75)
    assert callback.accuracies == {"val": pytest.approx([0.5, 0.5, 0.75])}
    torch.testing.assert_close(running_mean_logits(logits.transpose(0, 1))[1, 0], torch.tensor([0.5, 1.5]))


def test_per_step_accuracy_needs_per_step_logits(tmp_path):
    class Flat(FixedLogits):
        def forward(self, images):
            return images[:, 0]

        def loss(self, outputs, targets):
            return torch.nn.functional.cross_entropy(outputs, targets)

        def class_logits(self, outputs):
            return outputs

    with pytest.raises(ValueError, match=r"needs per-step logits \[T, B, classes\].*got \(2, 2\)"):
        trainer(tmp_path, [PerStepAccuracy()]).validate(Flat(), loader(torch.zeros(2, 3, 2), LABELS, 2))


class NoHooksWhileTraining(L.Callback):
    """Fails if any module carries a forward hook while a training batch runs."""

    def __init__(self) -> None:
        self.checked = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        hooked = [name for name, m in pl_module.named_modules() if m._forward_hooks or m._forward_pre_hooks]
        assert hooked == [], f"hooks left on {hooked} during training"
        self.checked += 1


def test_hooks_exist_only_during_evaluation_and_outputs_are_saved(tmp_path):
    model = ConvLIFLinear()
    guard = NoHooksWhileTraining()
    plots = PlotCallback(num_neurons=4)
    callbacks = [SpikeStats(), EnergyEstimate(), PerStepAccuracy(), plots, guard]
    logger = CSVLogger(tmp_path, name="csv")
    run = trainer(tmp_path, callbacks, logger=logger, max_epochs=2, log_every_n_steps=1)
    run.fit(model, loader(), loader())
    assert {"val/firing_rate", "val/acc_t1", "val/acc_t2"} <= set(run.callback_metrics)
    run.test(model, loader())
    assert guard.checked == 4  # two epochs of two batches, each after a validation
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    names = sorted(path.name for path in plots.saved)
    for prefix in ("val_epoch000", "val_epoch001", "test"):
        for plot in ("raster", "membrane", "firing_rates", "accuracy_vs_t"):
            assert f"{prefix}_{plot}.png" in names
    assert all(
        path.parent == tmp_path / "csv" / "version_0" / "plots" and path.stat().st_size > 0 for path in plots.saved
    )


def test_plot_callback_every_n_epochs_and_event_frames(tmp_path):
    frames = torch.zeros(3, 2, 2, 2, 2)  # [T, B, P, H, W] counts; sample 0 has one ON and one OFF event
    frames[0, 0, 1, 0, 0] = 3.0
    frames[2, 0, 0, 1, 1] = 1.0
    data = DataLoader(TensorDataset(frames.transpose(0, 1), LABELS), batch_size=2, collate_fn=time_major)
    plots = PlotCallback(every_n_epochs=2, layer="lif")
    trainer(tmp_path, [plots], max_epochs=3, limit_train_batches=1).fit(ConvLIFLinear(in_channels=2), data, data)
    epochs = sorted({path.name.split("_")[1] for path in plots.saved})
    assert epochs == ["epoch001", "epoch002"]  # epoch 2 (every 2nd) and the last, epoch 3 (0-based in names)
    assert {path.name for path in plots.saved} >= {"val_epoch001_events.png", "val_epoch001_raster.png"}


def time_major(samples):
    frames, labels = torch.utils.data.default_collate(samples)
    return frames.transpose(0, 1), labels


def test_plot_callback_names_a_missing_layer(tmp_path):
    with pytest.raises(ValueError, match=r"no module named 'nope' in ConvLIFLinear; spiking layers are \['lif'\]"):
        trainer(tmp_path, [PlotCallback(layer="nope")]).validate(ConvLIFLinear(), loader())


@pytest.mark.slow
def test_counts_and_accuracies_are_summed_over_ddp_ranks(tmp_path):
    # The sampler gives rank 0 samples 0 and 2 (firing, label 0) and rank 1 samples 1 and 3 (silent, label 1).
    # The untrained head predicts class 0 everywhere, so each rank alone would report accuracy 1 or 0.
    images, labels = IMAGES[[0, 1, 0, 1]], torch.tensor([0, 1, 0, 1])
    run = trainer(tmp_path, [SpikeStats(), EnergyEstimate(), PerStepAccuracy()], strategy="ddp_spawn", devices=2)
    run.test(ConvLIFLinear(), loader(images, labels))
    metrics = {name: value.item() for name, value in run.callback_metrics.items()}
    assert metrics["test/firing_rate/lif"] == pytest.approx(4 / 32)
    assert metrics["test/sops"] == pytest.approx(6)
    assert metrics["test/acc_t1"] == metrics["test/acc_t2"] == metrics["test/acc"] == pytest.approx(0.5)


def test_tensorboard_receives_the_plots_as_images_beside_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    run = trainer(tmp_path, [SpikeStats(), PlotCallback(num_neurons=4)], logger=logger, max_epochs=1)
    run.fit(ConvLIFLinear(), loader(), loader())
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    images = set(events.Tags()["images"])
    assert {"val/plots/raster", "val/plots/membrane", "val/plots/firing_rates"} <= images, images
    assert "val/firing_rate" in events.Tags()["scalars"]
    raster = events.Images("val/plots/raster")[-1]
    assert raster.width > 100 and raster.height > 100 and raster.encoded_image_string.startswith(b"\x89PNG")
