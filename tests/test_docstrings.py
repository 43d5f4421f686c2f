"""The ``>>>`` examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "snn_lightning.neurons.lif",
    "snn_lightning.neurons.adaptive",
    "snn_lightning.neurons.surrogate",
    "snn_lightning.neurons.dynamics",
    "snn_lightning.data.static",
    "snn_lightning.data.events",
    "snn_lightning.data.event_transforms",
    "snn_lightning.losses",
    "snn_lightning.distill.losses",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no >>> examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} fail (see the output above)"
