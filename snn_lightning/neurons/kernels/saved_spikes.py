"""Keep the spikes that the next layer saves for backward as ``bool`` (1 byte) instead of floats.

A convolution after a neuron saves its input, the spikes, for the weight gradient; autograd keeps
them in the compute dtype (4 bytes in float32) although they are 0/1. Inside
:func:`compact_spikes`, the neurons of :mod:`snn_lightning.neurons` register their outputs, and
every tensor autograd saves that shares a registered output's storage (the output itself or a
view such as the time-folded ``[T*B, ...]`` a convolution sees) is packed once as ``bool`` and
unpacked to the original dtype when backward needs it. The float spikes are then freed as soon as
the forward pass no longer uses them. Eager mode only: ``torch.compile`` does not trace
saved-tensor hooks.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from snn_lightning.neurons.kernels.fused import memory_order

__all__ = ["compact_spikes", "register_spikes"]

# Storage address -> (weak reference to the spike tensor, its bool copy once packed). Only filled
# inside `compact_spikes`; the weak reference proves the storage still belongs to those spikes.
_registry: dict[int, list[Any]] | None = None


def register_spikes(spikes: Tensor) -> Tensor:
    """Return ``spikes`` unchanged, noting them for bool packing when inside :func:`compact_spikes`."""
    registry = _registry
    # Packing indexes the bool copy with the saved view's strides: the spikes must be dense (any dim order,
    # channels-last included), so that the copy keeps their strides.
    if registry is not None and _dense(spikes) and not torch.compiler.is_compiling():
        address = spikes.untyped_storage().data_ptr()
        registry[address] = [weakref.ref(spikes, lambda _, address=address: registry.pop(address, None)), None]
    return spikes


def _dense(tensor: Tensor) -> bool:
    """Return whether ``tensor`` covers its memory without gaps or overlaps in some order of its dims."""
    return tensor.permute(memory_order(tensor)).is_contiguous()


def _pack(tensor: Tensor) -> Any:
    entry = _registry.get(tensor.untyped_storage().data_ptr()) if _registry is not None else None
    if entry is None or entry[0]() is None:
        return tensor
    spikes = entry[0]()
    if entry[1] is None:
        entry[1] = spikes.detach().to(torch.bool)
    offset = tensor.storage_offset() - spikes.storage_offset()
    return entry[1], spikes.dtype, tensor.shape, tensor.stride(), offset


def _unpack(packed: Any) -> Tensor:
    if isinstance(packed, Tensor):
        return packed
    compact, dtype, shape, stride, offset = packed
    return compact.to(dtype).as_strided(shape, stride, offset)


@contextmanager
def compact_spikes() -> Iterator[None]:
    """Within this context, spikes saved for backward by the layers after a neuron take 1 byte per element."""
    global _registry
    previous, _registry = _registry, {}
    try:
        with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
            yield
    finally:
        _registry = previous
