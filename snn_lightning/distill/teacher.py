"""Loading a frozen ANN teacher from a Lightning checkpoint of ``ANNClassifier`` or a plain state_dict file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snn_lightning.checkpoints import CHECKPOINT_FILES, load_file
from snn_lightning.errors import CheckpointError, missing_file_reason
from snn_lightning.models import ANN_ARCHITECTURES, ANNResNet

__all__ = ["TeacherCheckpointError", "build_teacher", "load_teacher", "teacher_state_dict"]

# ANNClassifier keeps its ResNet under this attribute, so its state_dict keys start with it.
_PREFIX = "network."
_FIX = (
    "set model.init_args.teacher_checkpoint to the teacher's checkpoint, written by fitting the teacher "
    "config your KD config's header names (configs/quickstart_kd_teacher.yaml for the digits, "
    "quickstart_fashion_teacher.yaml for Fashion-MNIST, ann_resnet34_cifar100.yaml for CIFAR-100)"
)


class TeacherCheckpointError(CheckpointError):
    """The teacher file is missing, unreadable or does not fit the configured teacher; the message names the fix."""


def teacher_state_dict(checkpoint: Any, source: str) -> dict[str, Tensor]:
    """Return the ANN weights of a loaded file: a Lightning checkpoint's ``state_dict`` or a plain state_dict.

    Keys of an ``ANNClassifier`` (``network.conv1.weight``) lose their ``network.`` prefix, so both
    forms give the keys of :class:`~snn_lightning.models.ANNResNet` (and of torchvision's ResNets).
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise TeacherCheckpointError(
            f"teacher file {source} holds neither a Lightning checkpoint nor a state_dict of tensors; "
            f"save the teacher with `torch.save(model.state_dict(), path)` or {_FIX}"
        )
    if all(key.startswith(_PREFIX) for key in state):
        return {key.removeprefix(_PREFIX): value for key, value in state.items()}
    return dict(state)


def _block_counts(keys: list[str]) -> tuple[int, ...]:
    """Return the number of residual blocks per stage named in ``keys`` (``layer3.5.conv1.weight`` → 6 in stage 3)."""
    counts: dict[int, int] = {}
    for key in keys:
        match = re.match(r"layer(\d+)\.(\d+)\.", key)
        if match:
            stage, block = int(match[1]), int(match[2])
            counts[stage] = max(counts.get(stage, 0), block + 1)
    return tuple(counts[stage] for stage in sorted(counts))


def _architecture_hint(keys: list[str], arch: str) -> str:
    """Return the fix for keys that do not fit ``arch``: the architecture their block counts match, if any."""
    blocks = _block_counts(keys)
    for name, builder in ANN_ARCHITECTURES.items():
        with torch.device("meta"):
            known = _block_counts(list(builder(num_classes=1).state_dict()))
        if known == blocks and name == arch:
            return f"its stages are a {arch}'s, so it was edited or saved with other modules; save the ANN's state_dict alone"
        if known == blocks:
            return f"its blocks {'/'.join(map(str, blocks))} are a {name}; set model.init_args.teacher_arch: {name}"
    if not blocks:
        return (
            "it holds no ResNet stages (layer1 … layer4); is it a spiking model's checkpoint? give an ANNClassifier's"
        )
    return f"its blocks {'/'.join(map(str, blocks))} match no teacher_arch in {', '.join(ANN_ARCHITECTURES)}"


def build_teacher(
    state: Mapping[str, Tensor],
    arch: str,
    num_classes: int,
    in_channels: int,
    stem: str,
    source: str,
    width_multiplier: float = 1.0,
) -> ANNResNet:
    """Return a frozen (eval mode, no gradient) ANN ``arch`` holding ``state``, after checking keys, classes and shapes.

    Args:
        state: the teacher's weights with :class:`~snn_lightning.models.ANNResNet` keys.
        arch: teacher architecture, a key of ``snn_lightning.models.ANN_ARCHITECTURES``.
        num_classes: the student's (the data's) number of classes; the teacher must have as many.
        in_channels: the data's image channels.
        stem: the teacher's stem, ``cifar`` or ``imagenet``.
        source: where the weights came from, for error messages.
        width_multiplier: the teacher's width multiplier (``ANNClassifier.width_multiplier``).
    """
    # Built on the meta device: no memory, no time and no random numbers spent on weights about to be replaced.
    with torch.device("meta"):
        teacher = ANN_ARCHITECTURES[arch](
            num_classes=num_classes, in_channels=in_channels, stem=stem, width_multiplier=width_multiplier
        )
    expected = teacher.state_dict()
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        listed = "; ".join(
            f"{label} keys {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''} ({len(keys)} in all)"
            for label, keys in (("missing", missing), ("unexpected", extra))
            if keys
        )
        raise TeacherCheckpointError(
            f"teacher file {source} does not fit an ANN {arch} ({stem} stem): {listed}; {_architecture_hint(list(state), arch)}"
        )
    teacher_classes = state["fc.weight"].shape[0]
    if teacher_classes != num_classes:
        raise TeacherCheckpointError(
            f"teacher file {source} has {teacher_classes} classes but the data module has {num_classes}; "
            f"distil from a teacher trained on the same dataset"
        )
    for key, value in expected.items():
        found = tuple(state[key].shape)
        if found == value.shape:
            continue
        if key == "conv1.weight" and found[1] != in_channels:
            fix = f"the teacher saw {found[1]}-channel images but the data has {in_channels}; distil from a teacher trained on the same dataset"
        elif found[0] != value.shape[0] and key != "fc.weight":
            trained = width_multiplier * found[0] / value.shape[0]
            fix = f"its layers are {trained:g}× the width of an ANN {arch}; set model.init_args.teacher_width_multiplier: {trained:g}"
        else:
            fix = "set model.init_args.teacher_stem (cifar: 3×3 conv1, imagenet: 7×7) to the stem the teacher was trained with"
        raise TeacherCheckpointError(
            f"teacher file {source}: {key} has shape {found} but an ANN {arch} (width ×{width_multiplier:g}) with the "
            f"{stem} stem and {in_channels} input channels expects {tuple(value.shape)}; {fix}"
        )
    teacher.load_state_dict(state, assign=True)
    return teacher.requires_grad_(False).eval()


def load_teacher(
    path: str, arch: str, num_classes: int, in_channels: int, stem: str, width_multiplier: float = 1.0
) -> ANNResNet:
    """Return the frozen ANN teacher stored at ``path`` (Lightning checkpoint or state_dict), read with ``weights_only``."""
    file = Path(path).expanduser().absolute()
    if not file.is_file():
        reason = missing_file_reason(file, ("*.pt", *CHECKPOINT_FILES))
        raise TeacherCheckpointError(f"teacher checkpoint {file} {reason}; {_FIX}")
    try:
        _, checkpoint = load_file(file, weights_only=True)
    except CheckpointError as error:
        cause = error.__cause__ or error
        raise TeacherCheckpointError(
            f"teacher checkpoint {file} is not a PyTorch checkpoint that loads with weights_only=True "
            f"({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}); {_FIX}"
        ) from cause
    state = teacher_state_dict(checkpoint, str(file))
    return build_teacher(state, arch, num_classes, in_channels, stem, str(file), width_multiplier)
