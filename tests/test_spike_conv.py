"""Spike-driven convolution: same results as nn.Conv2d from the nonzero inputs only; dense fallback when it does not apply."""

import pytest
import torch
from torch import nn

from snn_lightning.layers import DEFAULT_MAX_DENSITY, SpikeConv2d, spike_conv2d
from snn_lightning.models import spiking_resnet_mini


def _twins(in_channels, out_channels, kernel, stride, padding, bias):
    torch.manual_seed(0)
    sparse = SpikeConv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
    dense = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


# (in, out, kernel, stride, padding, bias, size): output channels cover the 64-wide, 16-wide and scalar paths.
SHAPES = [
    (8, 64, 3, 1, 1, False, 9),
    (5, 80, 3, 2, 1, True, 10),
    (6, 7, 5, 2, 2, True, 11),
    (16, 19, 1, 2, 0, False, 8),
    (3, 16, (3, 1), (1, 2), (1, 0), True, 7),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("binary", [True, False], ids=["spikes", "sparse-real"])
def test_matches_nn_conv2d_in_output_and_every_gradient(shape, binary):
    *layer, size = shape
    sparse, dense = _twins(*layer)
    torch.manual_seed(1)
    mask = torch.rand(3, layer[0], size, size) < 0.1  # below the default max_density: the sparse path
    x = mask.float() if binary else mask * torch.randn(mask.shape)
    assert sparse.sparse_offsets(x) is not None
    x_sparse, x_dense = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_sparse, out_dense = sparse(x_sparse), dense(x_dense)
    torch.testing.assert_close(out_sparse, out_dense, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out_dense)
    out_sparse.backward(grad)
    out_dense.backward(grad)
    torch.testing.assert_close(x_sparse.grad, x_dense.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.weight.grad, dense.weight.grad, rtol=1e-4, atol=1e-4)
    if dense.bias is not None:
        torch.testing.assert_close(sparse.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-5)


def test_one_spike_copies_the_kernel_into_the_outputs_it_reaches():
    conv = SpikeConv2d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(54.0).view(3, 2, 3, 3))
    x = torch.zeros(1, 2, 4, 4)
    x[0, 1, 2, 1] = 1.0
    out = conv(x)
    # The spike at (y=2, x=1) reaches output (oy, ox) through tap (ky, kx) = (2 - oy + 1, 1 - ox + 1).
    expected = torch.zeros(1, 3, 4, 4)
    for oy in range(1, 4):
        for ox in range(0, 3):
            expected[0, :, oy, ox] = conv.weight[:, 1, 2 - oy + 1, 1 - ox + 1]
    assert torch.equal(out, expected)
    # Weight gradient of sum(out): each tap of channel 1 saw the spike once, channel 0 never.
    conv(x).sum().backward()
    assert torch.equal(conv.weight.grad[:, 0], torch.zeros(3, 3, 3))
    assert torch.equal(conv.weight.grad[:, 1], torch.ones(3, 3, 3))


def test_output_is_channels_last_and_input_of_any_layout_works():
    sparse, dense = _twins(4, 16, 3, 1, 1, False)
    x = (torch.rand(2, 4, 6, 6) < 0.2).float()
    out = sparse(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, dense(x), rtol=1e-5, atol=1e-5)
    transposed_memory = x.transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(sparse(transposed_memory), dense(x), rtol=1e-5, atol=1e-5)


def test_all_zero_input_gives_the_bias():
    conv = SpikeConv2d(3, 5, 3, padding=1)
    out = conv(torch.zeros(2, 3, 4, 4))
    assert torch.equal(out, conv.bias.detach().view(1, 5, 1, 1).expand(2, 5, 4, 4))


def test_dense_input_other_dtypes_and_autocast_take_the_nn_conv2d_path():
    sparse, dense = _twins(3, 8, 3, 1, 1, True)
    busy = torch.rand(2, 3, 5, 5) + 0.1
    assert sparse.sparse_offsets(busy) is None
    assert torch.equal(sparse(busy), dense(busy))
    spikes = (torch.rand(2, 3, 5, 5) < 0.1).float()
    assert SpikeConv2d(3, 8, 3, max_density=0.0).sparse_offsets(spikes) is None
    assert sparse.double().sparse_offsets(spikes.double()) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert sparse.float().sparse_offsets(spikes) is None
        assert sparse(spikes).dtype == torch.bfloat16


def test_saves_the_nonzeros_for_backward_instead_of_the_input():
    def saved_bytes(conv, x):
        sizes = []

        def pack(tensor):
            sizes.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            conv(x)
        return sum(sizes)

    sparse, dense = _twins(32, 32, 3, 1, 1, False)
    x = (torch.rand(8, 32, 16, 16) < 0.05).float().requires_grad_()
    weight_bytes = sparse.weight.numel() * 4
    # Dense keeps the 4-byte input; sparse keeps 8 bytes per nonzero plus one offset per pixel.
    assert saved_bytes(dense, x) == x.numel() * 4 + weight_bytes
    nonzeros = int(x.count_nonzero())
    assert saved_bytes(sparse, x) == nonzeros * 8 + (8 * 16 * 16 + 1) * 8 + weight_bytes
    assert saved_bytes(sparse, x) < saved_bytes(dense, x) / 3


def test_rejects_a_density_outside_zero_one():
    with pytest.raises(ValueError, match="max_density must lie in \\[0, 1\\], got 1.5"):
        SpikeConv2d(2, 2, 3, max_density=1.5)


def test_state_dict_is_that_of_nn_conv2d():
    sparse, dense = _twins(3, 4, 3, 1, 1, True)
    assert sparse.state_dict().keys() == dense.state_dict().keys()
    assert f"max_density={DEFAULT_MAX_DENSITY}" in repr(sparse)


def test_functional_form_matches_nn_conv2d():
    sparse, dense = _twins(4, 6, 3, 2, 1, True)
    x = (torch.rand(2, 4, 7, 7) < 0.3).float()
    torch.testing.assert_close(
        spike_conv2d(x, sparse.weight, sparse.bias, (2, 2), (1, 1)), dense(x), rtol=1e-5, atol=1e-5
    )


def test_spiking_resnet_convolutions_after_the_stem_run_on_spikes():
    model = spiking_resnet_mini(10, time_steps=2)
    convs = [module for module in model.modules() if isinstance(module, SpikeConv2d)]
    assert len(convs) == 5  # stem + two per block; the 1×1 shortcut stays nn.Conv2d
    taken = []
    for conv in convs:
        conv.register_forward_hook(lambda module, args, out: taken.append(module.sparse_offsets(args[0]) is not None))
    model(torch.rand(4, 3, 8, 8))
    assert taken == [False, True, True, True, True]  # images are dense; spikes are not


def test_missing_compiler_runs_nn_conv2d_with_a_warning(run_without_compiler):
    code = (
        "import warnings, torch\n"
        "from snn_lightning.layers import SpikeConv2d\n"
        "conv = SpikeConv2d(2, 3, 3, padding=1)\n"
        "x = (torch.rand(1, 2, 5, 5) < 0.1).float()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    out = conv(x)\n"
        "assert torch.equal(out, torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))\n"
        "print([str(w.message) for w in caught])\n"
    )
    stdout = run_without_compiler(code)
    assert "could not build the spike-driven CPU convolution (compiler" in stdout
    assert "SpikeConv2d runs as nn.Conv2d" in stdout


def test_model_density_setting_reaches_every_spike_convolution_and_is_checked():
    model = spiking_resnet_mini(10, spike_conv_max_density=0.0)
    densities = {module.max_density for module in model.modules() if isinstance(module, SpikeConv2d)}
    assert densities == {0.0}
    with pytest.raises(ValueError, match="max_density must lie in \\[0, 1\\], got -0.1"):
        spiking_resnet_mini(10, spike_conv_max_density=-0.1)


def test_functional_form_rejects_what_the_kernel_cannot_read():
    weight = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="float32 CPU input .* use SpikeConv2d"):
        spike_conv2d(torch.zeros(1, 2, 5, 5, dtype=torch.float64), weight, None, (1, 1), (1, 1))


def test_too_small_input_gets_nn_conv2d_error_and_double_backward_is_refused():
    conv = SpikeConv2d(2, 3, 5, max_density=1.0)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size|too small"):
        conv(torch.zeros(1, 2, 3, 3))
    x = (torch.rand(1, 2, 6, 6) < 0.2).float().requires_grad_()
    assert conv.sparse_offsets(x) is not None
    (grad,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|trying to differentiate twice"):
        grad.sum().backward()
