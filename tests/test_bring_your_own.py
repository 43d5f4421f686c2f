"""Bring your own: the examples' model, data module and neuron train from their configs; the inspection callbacks take SpikingJelly's LIFNode."""

import csv
import doctest
import importlib

import pytest
from conftest import REPO
from helpers import TWO_BATCHES, run_main
from test_callbacks import IMAGES, ConvLIFLinear, loader, trainer

from snn_lightning.callbacks import PlotCallback, SpikeStats, record_layer
from snn_lightning.cli.main import main
from snn_lightning.errors import ConfigurationError

LIF_NODE = "spikingjelly.activation_based.neuron.LIFNode"


@pytest.fixture
def examples_importable(in_tmp_dir, monkeypatch):
    """Work in a temporary folder with the repository root on the import path, as ``PYTHONPATH=.`` there does."""
    monkeypatch.syspath_prepend(str(REPO))
    return in_tmp_dir


@pytest.mark.parametrize(
    "example, trained",
    [
        ("custom_model", "examples.custom_model.TinySNNClassifier"),
        ("custom_datamodule", "examples.custom_datamodule.BarsDataModule"),
        ("custom_neuron", "examples.custom_neuron.SynapticLIF"),
    ],
)
def test_every_example_config_fits(example, trained, examples_importable):
    main(["fit", "--config", str(REPO / "examples" / f"{example}.yaml"), *TWO_BATCHES])
    run = examples_importable / "logs" / example / "version_0"
    assert trained in (run / "config.yaml").read_text()
    with open(run / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["val/acc"] for row in rows if row.get("val/acc")], "no validation accuracy logged"


def test_the_custom_neuron_docstring_example_holds(examples_importable):
    result = doctest.testmod(importlib.import_module("examples.custom_neuron"))
    assert result.attempted > 0 and result.failed == 0


def jelly_model() -> ConvLIFLinear:
    """Return the hand-counted two-layer model of test_callbacks with SpikingJelly's multi-step LIFNode as its neuron.

    SpikingJelly's neurons keep their membrane between calls; ``reset_net`` before each forward starts
    it at rest, as the package's neurons do, so the hand count (4 spikes of 32 outputs) holds.
    """
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    functional = pytest.importorskip("spikingjelly.activation_based.functional")
    model = ConvLIFLinear()
    model.lif = neuron.LIFNode(tau=2.0, step_mode="m")  # SpikingJelly's defaults: v_threshold 1, v_reset 0, decay_input
    model.register_forward_pre_hook(lambda module, args: functional.reset_net(module))
    return model


def test_spike_stats_and_plots_take_spikingjelly_neurons_by_class_path(tmp_path):
    model = jelly_model()
    stats = SpikeStats(spiking_modules=[LIF_NODE])
    plots = PlotCallback(num_neurons=4, spiking_modules=[LIF_NODE])
    with pytest.warns(UserWarning, match="skips the membrane plot: lif is of type LIFNode"):
        (metrics,) = trainer(tmp_path, [stats, plots]).validate(model, loader())
    assert metrics["val/firing_rate/lif"] == pytest.approx(4 / 32)
    assert stats.table == {"lif": pytest.approx(4 / 32)}
    assert sorted(path.name for path in plots.saved) == ["val_epoch000_firing_rates.png", "val_epoch000_raster.png"]
    assert all(path.stat().st_size > 0 for path in plots.saved)
    _, spikes = record_layer(model, IMAGES, "lif")
    assert spikes.sum().item() == 4  # what the raster shows: the hand count again


def test_without_spiking_modules_a_foreign_neuron_is_named_as_the_fix(tmp_path):
    with pytest.raises(ConfigurationError, match=r"SpikeStats found no spiking layer in ConvLIFLinear; name .*"):
        trainer(tmp_path, [SpikeStats()]).validate(jelly_model(), loader())


@pytest.mark.parametrize(
    "path, problem",
    [
        ("spikingjelly.activation_based.neuron.LIFNod", "does not import"),
        ("no_such_package.Neuron", "does not import"),
        ("torch.Tensor", "is no torch.nn.Module class"),
    ],
)
def test_a_bad_class_path_is_one_clear_error(path, problem):
    with pytest.raises(ConfigurationError, match=rf"spiking_modules names '{path}', which {problem}"):
        PlotCallback(spiking_modules=[path])


def test_a_bad_class_path_in_a_config_exits_with_one_line(examples_importable, capsys):
    callback = '{"class_path": "snn_lightning.callbacks.SpikeStats", "init_args": {"spiking_modules": ["nowhere.LIF"]}}'
    args = ["fit", "--config", str(REPO / "examples" / "custom_model.yaml"), "--trainer.callbacks+", callback]
    code, _, err = run_main([*args, *TWO_BATCHES], capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: spiking_modules names 'nowhere.LIF', which does not import")
