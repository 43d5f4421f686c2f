"""ONNX export: onnxruntime gives the trained network's logits at any batch size, from the CLI too, for images and frames."""

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import REPO

from snn_lightning.cli import main
from snn_lightning.export import to_onnx
from snn_lightning.models import SpikingConvNet, spiking_resnet_mini
from snn_lightning.models.spiking_convnet import CONVNET_LAYOUTS
from snn_lightning.modules import SNNClassifier
from snn_lightning.neurons import PLIF

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
QUICKSTART_DVS = str(REPO / "configs" / "quickstart_dvs.yaml")


def onnx_logits(path, inputs: torch.Tensor) -> np.ndarray:
    """Return the logits onnxruntime computes for ``inputs`` with the model in ``path``."""
    session = onnxruntime.InferenceSession(str(path))
    return session.run(["logits"], {"images": inputs.numpy()})[0]


def trained_like(network: torch.nn.Module) -> torch.nn.Module:
    """Return ``network`` in eval mode with BatchNorm statistics moved off their defaults, as training leaves them."""
    torch.manual_seed(3)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return network.eval()


@pytest.mark.parametrize(
    "network, shape",
    [
        (lambda: spiking_resnet_mini(num_classes=10, in_channels=1, time_steps=4, width_multiplier=0.5), (1, 8, 8)),
        (
            lambda: SpikingConvNet(10, in_channels=1, time_steps=3, neuron=PLIF(), **CONVNET_LAYOUTS["convnet2"]),
            (1, 28, 28),
        ),
    ],
    ids=["resnet_mini", "convnet2_plif"],
)
def test_onnxruntime_gives_the_networks_logits_at_any_batch_size(network, shape, tmp_path):
    torch.manual_seed(0)
    net = trained_like(network())
    to_onnx(net, shape, tmp_path / "net.onnx")
    for batch in (1, 5):
        images = torch.rand(batch, *shape)
        with torch.no_grad():
            expected = net(images).numpy()
        logits = onnx_logits(tmp_path / "net.onnx", images)
        assert logits.shape == (net.time_steps, batch, 10)
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert net.training is False and all(getattr(m, "backend", "auto") != "reference" for m in net.modules()), (
        "the export changed the network it was given"
    )


def test_cli_exports_a_checkpoint_as_onnx(in_tmp_dir, capsys):
    torch.manual_seed(1)
    model = SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=1, time_steps=4)
    trained_like(model.network)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": 0}
    torch.save(checkpoint, in_tmp_dir / "trained.ckpt")
    main(["export", "--config", QUICKSTART, "--ckpt_path", "trained.ckpt", "--format", "onnx"])
    written = in_tmp_dir / "trained.onnx"
    assert capsys.readouterr().out.strip().startswith(f"wrote {written}: ONNX model of SNNClassifier")
    images = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        expected = model.network.eval()(images).numpy()
    np.testing.assert_allclose(onnx_logits(written, images), expected, rtol=1e-5, atol=1e-5)


def test_event_frames_export_with_time_first_and_a_dynamic_batch(in_tmp_dir, capsys):
    model = SNNClassifier(arch="resnet_mini", num_classes=10, in_channels=2, time_steps=3)
    torch.save({"state_dict": model.state_dict(), "epoch": 0}, in_tmp_dir / "dvs.ckpt")
    main(["export", "--config", QUICKSTART_DVS, "--ckpt_path", "dvs.ckpt", "--format", "onnx", "--output", "dvs.onnx"])
    assert "(input `images` batch x 3 frames of 2x11x11" in capsys.readouterr().out  # quickstart_dvs: T=3, 11x11
    frames = torch.rand(3, 4, 2, 11, 11)
    with torch.no_grad():
        expected = model.network.eval()(frames).numpy()
    np.testing.assert_allclose(onnx_logits(in_tmp_dir / "dvs.onnx", frames), expected, rtol=1e-5, atol=1e-5)


def test_without_the_onnx_packages_the_error_names_the_extra(in_tmp_dir, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxscript" else find_spec(name))
    with pytest.raises(SystemExit) as stop:
        main(["export", "--config", QUICKSTART, "--ckpt_path", "any.ckpt", "--format", "onnx"])
    assert stop.value.code == 2
    assert "needs onnxscript (not installed here); pip install 'snn-lightning[onnx]'" in capsys.readouterr().err
