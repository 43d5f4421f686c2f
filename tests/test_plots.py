"""Plot functions: each returns a Figure with the expected panels and artists and saves a non-empty PNG."""

import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from snn_lightning import plots
from snn_lightning.neurons import IF, LIF, PLIF, AdaptiveLIF


def saves_png(figure, tmp_path):
    path = tmp_path / "figure.png"
    figure.savefig(path)
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_spike_raster_has_one_panel_per_sample_and_a_tick_per_spike(tmp_path):
    spikes = torch.zeros(4, 3, 2, 5)  # [T, B, C, W]: 10 neurons per sample
    spikes[0, 0, 0, 0] = spikes[3, 0, 1, 4] = spikes[2, 1, 0, 3] = 1
    figure = plots.spike_raster(spikes, num_samples=2, num_neurons=6, layer="stem")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    ticks = [ax.collections[0].get_offsets() for ax in figure.axes]
    assert [len(t) for t in ticks] == [2, 1]
    assert figure.axes[0].get_title() == "sample 0: 2 spikes" and "stem" in figure._suptitle.get_text()
    assert saves_png(figure, tmp_path)


def test_firing_rate_bars_draw_one_bar_per_layer_and_the_mean(tmp_path):
    figure = plots.firing_rate_bars({"a": 0.1, "b": 0.3, "c": 0.2})
    (ax,) = figure.axes
    assert [bar.get_width() for bar in ax.patches] == pytest.approx([0.1, 0.3, 0.2])
    assert [label.get_text() for label in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_legend().get_texts()[0].get_text() == "mean 0.200"
    assert saves_png(figure, tmp_path)
    with pytest.raises(ValueError, match="at least one layer"):
        plots.firing_rate_bars({})


def test_accuracy_vs_time_steps_draws_a_line_per_stage(tmp_path):
    figure = plots.accuracy_vs_time_steps({"val": [0.5, 0.7, 0.8], "test": [0.4, 0.6, 0.9]})
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.get_lines()] == ["val", "test"]
    assert list(ax.get_lines()[1].get_ydata()) == [0.4, 0.6, 0.9]
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3]
    assert saves_png(figure, tmp_path)


@pytest.mark.parametrize("neuron", [LIF(tau=2.0), LIF(tau=3.0, v_reset=None, decay_input=False), PLIF(), IF()])
def test_membrane_potential_reproduces_the_neuron_spikes(neuron):
    torch.manual_seed(0)
    currents = torch.rand(6, 2, 3, 4) * 2
    membrane, spikes = plots.membrane_potential(neuron, currents)
    assert torch.equal(spikes, neuron(currents).detach())
    assert torch.equal(spikes, (membrane >= neuron.v_threshold).float())


def test_membrane_potential_by_hand():
    # LIF tau=2, hard reset to 0: H1 = 1.5/2 = 0.75; H2 = 0.75 + (1.5 - 0.75)/2 = 1.125 → spike, V2 = 0; H3 = 0.75.
    membrane, spikes = plots.membrane_potential(LIF(tau=2.0), torch.full((3, 1), 1.5))
    assert membrane.flatten().tolist() == [0.75, 1.125, 0.75]
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0]


def test_membrane_traces_show_input_membrane_threshold_and_spikes(tmp_path):
    currents = torch.zeros(3, 2, 5)
    currents[:, 0, 2] = 1.5  # the neuron closest to the threshold comes first
    figure = plots.membrane_traces(LIF(tau=2.0), currents, num_neurons=3, layer="stem")
    assert len(figure.axes) == 3 and figure.axes[0].get_title() == "neuron 2"
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["input current X[t]", "membrane H[t]", "threshold"]
    spike_marks = [c for c in figure.axes[0].collections if isinstance(c, PathCollection)]
    assert len(spike_marks[0].get_offsets()) == 1  # fires at t = 2 only
    assert len(figure.legends) == 1 and saves_png(figure, tmp_path)


def test_membrane_potential_rejects_a_neuron_with_other_equations():
    with pytest.raises(ValueError, match="AdaptiveLIF has its own forward; choose a layer with a LIF, PLIF or IF"):
        plots.membrane_potential(AdaptiveLIF(), torch.zeros(2, 1, 1))


def test_event_frames_draw_on_red_and_off_blue(tmp_path):
    frames = torch.zeros(10, 2, 3, 3)
    frames[0, 1, 0, 0] = 4  # ON (channel 1)
    frames[0, 0, 2, 2] = 2  # OFF (channel 0)
    figure = plots.event_frames(frames, max_frames=4)
    assert len(figure.axes) == 4 and figure.axes[3].get_title() == "t = 4"
    image = figure.axes[0].images[0].get_array()
    assert image[0, 0].tolist() == [1.0, 0.0, 0.0]  # full red
    assert image[2, 2].tolist() == pytest.approx([0.5, 0.5, 1.0])  # half-count blue
    assert image[1, 1].tolist() == [1.0, 1.0, 1.0]  # no event: white
    assert saves_png(figure, tmp_path)
    with pytest.raises(ValueError, match=r"one clip \[T, P, H, W\].*got shape \(10, 1, 2, 3, 3\)"):
        plots.event_frames(frames.unsqueeze(1))
