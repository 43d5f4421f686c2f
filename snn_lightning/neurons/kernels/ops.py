"""What the compiled LIF kernels take (:class:`KernelSettings`) and the one helper that registers them as ops.

Each compiled implementation (the C++ kernel of :mod:`.cpu`, the Triton kernels of
:mod:`.triton_lif`) provides a forward and a backward taking :class:`KernelSettings`;
:func:`register_lif_ops` registers them as the ``torch.library`` custom ops
``snn_lightning::lif_forward_<name>`` and ``lif_backward_<name>`` with their fake (shape-only)
versions, so ``torch.compile`` treats them as opaque calls.
"""

from collections.abc import Callable
from typing import NamedTuple, get_type_hints

import torch
from torch import Tensor

from snn_lightning.neurons.dynamics import LIFSettings
from snn_lightning.neurons.surrogate import ATan, Rectangle, Sigmoid, Surrogate, Triangle

__all__ = ["SURROGATE_FROM_TABLE", "KernelSettings", "Implementation", "surrogate_code", "register_lif_ops"]

# Surrogate kind for a surrogate the kernels do not know: backward reads its derivatives σ' from a table that
# the surrogate's own Python code computed. The kernels evaluate the kinds below themselves.
SURROGATE_FROM_TABLE = 0
_SURROGATE_CODES: dict[type, tuple[int, str]] = {
    ATan: (1, "alpha"),
    Sigmoid: (2, "alpha"),
    Rectangle: (3, "width"),
    Triangle: (4, "width"),
}


def surrogate_code(surrogate: Surrogate) -> tuple[int, float]:
    """Return ``(kind, parameter)`` for a kernel: a built-in surrogate's code, or ``(SURROGATE_FROM_TABLE, 0.0)`` for any other."""
    entry = _SURROGATE_CODES.get(type(surrogate))
    if entry is None:
        return SURROGATE_FROM_TABLE, 0.0
    code, parameter = entry
    return code, float(getattr(surrogate, parameter))


class KernelSettings(NamedTuple):
    """:class:`LIFSettings` in the plain numbers a kernel takes, with the layout of the leak over a step."""

    channels: int
    """Number of leak values; neuron ``n`` of a step ``[N]`` uses ``leak[(n // inner) % channels]``."""
    inner: int
    """Number of consecutive neurons sharing one leak value."""
    v_threshold: float
    v_reset: float
    """Potential after a spike; unused for soft reset."""
    hard_reset: bool
    decay_input: bool
    detach_reset: bool
    surrogate_kind: int
    """A built-in surrogate's code, or :data:`SURROGATE_FROM_TABLE` when backward gets a table of its derivatives."""
    surrogate_parameter: float

    @classmethod
    def of(cls, settings: LIFSettings, channels: int, inner: int) -> "KernelSettings":
        """Return the kernel form of ``settings`` for a leak of ``channels`` values each shared by ``inner`` neurons."""
        hard_reset = settings.v_reset is not None
        kind, parameter = surrogate_code(settings.surrogate)
        return cls(
            channels,
            inner,
            float(settings.v_threshold),
            float(settings.v_reset) if hard_reset else 0.0,
            hard_reset,
            settings.decay_input,
            settings.detach_reset,
            kind,
            parameter,
        )

    @property
    def v_rest(self) -> float:
        """Return the potential the membrane starts from and leaks towards: ``v_reset``, or 0 for soft reset."""
        return self.v_reset if self.hard_reset else 0.0


# forward(x [T, N], leak, settings) -> (spikes [T, N], H [T, N] in the state dtype)
KernelForward = Callable[[Tensor, Tensor, KernelSettings], tuple[Tensor, Tensor]]
# backward(dL/dS, H, leak, table of σ' or None, settings, leak_grad) -> (dL/dX [T, N], leak gradient [N] or empty)
KernelBackward = Callable[[Tensor, Tensor, Tensor, Tensor | None, KernelSettings, bool], tuple[Tensor, Tensor]]


class Implementation(NamedTuple):
    """Forward and backward of one implementation of the fused LIF, both taking :class:`KernelSettings`."""

    forward: KernelForward
    backward: KernelBackward
    builtin_surrogates: bool
    """Whether backward evaluates the built-in surrogates itself; else it always gets the table of σ'."""


_SCHEMA_SETTINGS = ", ".join(f"{kind.__name__} {name}" for name, kind in get_type_hints(KernelSettings).items())


def _forward_fake(x: Tensor, leak: Tensor, *settings: object) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), x.new_empty(x.shape, dtype=leak.dtype)


def _backward_fake(grad_spikes: Tensor, h_seq: Tensor, leak_grad: bool, *rest: object) -> tuple[Tensor, Tensor]:
    return torch.empty_like(grad_spikes), h_seq.new_empty(h_seq.shape[1] if leak_grad else 0)


def register_lif_ops(
    name: str, forward: KernelForward, backward: KernelBackward, device_types: str | None = None
) -> Implementation:
    """Register ``forward`` and ``backward`` as ``snn_lightning::lif_{forward,backward}_<name>`` and return them as ops.

    Args:
        name: suffix of the op names (``"cpu"``, ``"triton"``).
        forward: the kernel's forward, returning spikes shaped like ``x`` and ``H`` in the leak's dtype.
        backward: the kernel's backward, returning ``dL/dX`` like ``dL/dS`` and the leak gradient ``[N]`` or empty.
        device_types: device type the kernels run on; None registers them for every device.
    """
    torch.library.custom_op(
        f"snn_lightning::lif_forward_{name}",
        lambda x, leak, *settings: forward(x, leak, KernelSettings(*settings)),
        mutates_args=(),
        device_types=device_types,
        schema=f"(Tensor x, Tensor leak, {_SCHEMA_SETTINGS}) -> (Tensor, Tensor)",
    ).register_fake(_forward_fake)
    torch.library.custom_op(
        f"snn_lightning::lif_backward_{name}",
        lambda grad_spikes, h_seq, leak_grad, leak, table, *settings: backward(
            grad_spikes, h_seq, leak, table, KernelSettings(*settings), leak_grad
        ),
        mutates_args=(),
        device_types=device_types,
        schema=(
            f"(Tensor grad_spikes, Tensor h_seq, bool leak_grad, Tensor leak, Tensor? table, {_SCHEMA_SETTINGS}) "
            f"-> (Tensor, Tensor)"
        ),
    ).register_fake(_backward_fake)
    forward_op = getattr(torch.ops.snn_lightning, f"lif_forward_{name}")
    backward_op = getattr(torch.ops.snn_lightning, f"lif_backward_{name}")
    return Implementation(
        lambda x, leak, settings: forward_op(x, leak, *settings),
        lambda grad_spikes, h_seq, leak, table, settings, leak_grad: backward_op(
            grad_spikes, h_seq, leak_grad, leak, table, *settings
        ),
        builtin_surrogates=True,
    )
