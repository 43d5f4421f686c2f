"""Backends of the multi-step LIF: ``reference`` (the plain loop, the oracle), ``fused`` and ``triton``.

* ``fused`` (any device): one autograd node for all T steps (:class:`FusedLIF`) that saves only
  the pre-spike membrane ``H`` and applies the hand-derived BPTT formulas in backward. On the CPU
  it runs a C++/OpenMP kernel compiled once on first use (:mod:`.cpu`); elsewhere, or without a
  compiler, a loop of PyTorch ops (:data:`.fused.TORCH_LOOP`).
* ``triton`` (CUDA): the same node running one Triton kernel for the forward recurrence and one
  for the backward (:mod:`.triton_lif`).
* ``auto``: ``triton`` for CUDA tensors, ``fused`` otherwise.

All backends take every surrogate, a scalar or per-channel leak, float32/bfloat16/float16
input with a float32 membrane, and give the reference's spikes bit for bit.
:func:`compact_spikes` keeps the spikes the next layers save for backward as bool.
"""

from snn_lightning.neurons.kernels.dispatch import BACKENDS, Backend, lif_multistep_backend, resolve_backend
from snn_lightning.neurons.kernels.fused import FusedLIF
from snn_lightning.neurons.kernels.saved_spikes import compact_spikes

__all__ = ["Backend", "BACKENDS", "resolve_backend", "lif_multistep_backend", "FusedLIF", "compact_spikes"]
