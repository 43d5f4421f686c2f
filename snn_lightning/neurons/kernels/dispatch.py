"""Choose and run a LIF backend: the reference loop, the fused autograd node, or the Triton kernels."""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Literal, get_args

import torch
from torch import Tensor

from snn_lightning.neurons.dynamics import LIFSettings, lif_multistep
from snn_lightning.neurons.kernels.fused import TORCH_LOOP, FusedLIF
from snn_lightning.neurons.kernels.ops import Implementation
from snn_lightning.neurons.kernels.saved_spikes import register_spikes

__all__ = [
    "Backend",
    "BACKENDS",
    "check_backend",
    "resolve_backend",
    "fused_implementation",
    "lif_multistep_backend",
]

Backend = Literal["auto", "reference", "fused", "triton"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

logger = logging.getLogger("snn_lightning")
_announced: set[tuple[str, str]] = set()
# (backend, device type) -> the implementation the fused node runs, filled on first use.
_implementations: dict[tuple[Backend, str], Implementation] = {}


def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_runs_on(device: torch.device) -> bool:
    """Return whether the Triton kernels can run on ``device``: CUDA, or any tensor under ``TRITON_INTERPRET=1``."""
    return _triton_importable() and (device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")


def check_backend(backend: str) -> None:
    """Raise ``ValueError`` naming the choices if ``backend`` is not one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown LIF backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def resolve_backend(backend: Backend, device: torch.device, dtype: torch.dtype = torch.float32) -> Backend:
    """Return the backend that runs: ``"reference"``, ``"fused"`` or ``"triton"`` (``"auto"`` resolved for ``device``).

    ``"auto"`` takes Triton for CUDA tensors (float32/bfloat16/float16) when Triton is installed,
    else the fused node (C++/OpenMP kernel on the CPU, a PyTorch loop elsewhere); the choice is
    logged once per process.
    """
    check_backend(backend)
    if backend == "auto":
        chosen = "triton" if device.type == "cuda" and dtype != torch.float64 and _triton_importable() else "fused"
        if (chosen, device.type) not in _announced:
            _announced.add((chosen, device.type))
            logger.info("LIF backend 'auto' runs %r on %s tensors", chosen, device.type)
        return chosen
    if backend == "triton" and not _triton_runs_on(device):
        reason = "triton is not installed" if not _triton_importable() else f"the input is on {device.type}, not CUDA"
        raise RuntimeError(
            f"LIF backend 'triton' cannot run: {reason}; use backend='fused' (any device) or 'auto', "
            f"or set TRITON_INTERPRET=1 before importing triton to run the kernels on the CPU for testing"
        )
    return backend


@torch.compiler.disable
def _load_implementation(backend: Backend, device_type: str) -> Implementation:
    # Building or importing a kernel is not traceable; once loaded, torch.compile only sees the dict lookup.
    if backend == "triton":
        from snn_lightning.neurons.kernels import triton_lif

        loaded = triton_lif.implementation()
    elif device_type == "cpu":
        from snn_lightning.neurons.kernels import cpu

        loaded = cpu.implementation() or TORCH_LOOP
    else:
        loaded = TORCH_LOOP
    return _implementations.setdefault((backend, device_type), loaded)


def fused_implementation(backend: Backend, device: torch.device) -> Implementation:
    """Return what :class:`~.fused.FusedLIF` runs for backend ``"fused"`` or ``"triton"`` on ``device``.

    ``"triton"`` gives the Triton kernels; ``"fused"`` the C++/OpenMP kernel on the CPU (built on
    first use; :data:`~.fused.TORCH_LOOP` without a compiler) and :data:`~.fused.TORCH_LOOP` elsewhere.
    """
    if backend not in ("fused", "triton"):
        raise ValueError(
            f"backend {backend!r} does not run the fused node; expected 'fused' or 'triton' "
            f"(resolve 'auto' with resolve_backend first; 'reference' runs lif_multistep)"
        )
    loaded = _implementations.get((backend, device.type))
    return _load_implementation(backend, device.type) if loaded is None else loaded


def lif_multistep_backend(
    x_seq: Tensor, inv_tau: float | Tensor, settings: LIFSettings, backend: Backend = "auto"
) -> Tensor:
    """Return the spikes of :func:`~snn_lightning.neurons.dynamics.lif_multistep` computed by ``backend``.

    Same arguments and results as the reference (spikes bit for bit, gradients to rounding); the
    fused and Triton backends keep only the membrane ``H`` for backward.

    Args:
        x_seq: input currents, time-major ``[T, ...]``.
        inv_tau: the leak ``1/tau``: a float, or a tensor broadcastable to one step (learnable leak).
        settings: threshold, reset, input decay and surrogate of the neurons.
        backend: one of :data:`BACKENDS`; ``"auto"`` is resolved by :func:`resolve_backend`.
    """
    chosen = resolve_backend(backend, x_seq.device, x_seq.dtype)
    if chosen == "reference":
        return register_spikes(lif_multistep(x_seq, inv_tau, settings))
    if not isinstance(inv_tau, Tensor):
        inv_tau = torch.full((), inv_tau, dtype=torch.float64, device=x_seq.device)
    implementation = fused_implementation(chosen, x_seq.device)
    return register_spikes(FusedLIF.apply(x_seq, inv_tau, settings, implementation))
