"""``snn-lightning export``: write a trained checkpoint as a NIR graph or an ONNX model.

    snn-lightning export --config configs/quickstart.yaml \\
        --ckpt_path logs/quickstart/latest/checkpoints/best.ckpt --format nir --output model.nir
    snn-lightning export --config configs/quickstart_fashion.yaml --ckpt_path <best.ckpt> --format onnx

The model and data module are built from the config exactly as ``fit`` builds them (same links,
same one-line errors); the checkpoint's weights are loaded into the model, the input shape is
taken from the data module, and :func:`~snn_lightning.export.to_nir` (spiking ResNets) or
:func:`~snn_lightning.export.to_onnx` (any network) does the rest. No trainer is built and no data is read.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import nir
import torch
from lightning.pytorch.cli import ArgsType, LightningArgumentParser

from snn_lightning.checkpoints import CHECKPOINT_FILES, read_checkpoint, state_dict_mismatch
from snn_lightning.cli.checkpoint_settings import SPECIAL_CKPT_PATHS
from snn_lightning.cli.lightning_cli import SNNLightningCLI
from snn_lightning.data import EventDataModule, SplitDataModule
from snn_lightning.errors import CheckpointError, ConfigurationError, OutputDirError, missing_file_reason
from snn_lightning.export.nir_export import to_nir
from snn_lightning.export.onnx_export import to_onnx
from snn_lightning.models import SpikingResNet

__all__ = ["ExportCLI", "export", "input_shape_of"]

ExportFormat = Literal["nir", "onnx"]


def input_shape_of(datamodule: L.LightningDataModule) -> tuple[int, int, int]:
    """Return ``(channels, height, width)`` of one image or event frame of ``datamodule``, without reading data."""
    if isinstance(datamodule, SplitDataModule):
        return datamodule.input_shape
    raise ConfigurationError(
        f"export cannot tell the input size of data module {type(datamodule).__name__}; it reads the "
        f"input_shape of snn_lightning's data modules; choose StaticImageDataModule or EventDataModule as data"
    )


class ExportCLI(SNNLightningCLI):
    """The CLI's parser and model building with ``--ckpt_path``, ``--format`` and ``--output``; builds no trainer."""

    def __init__(self, args: list[str]) -> None:
        """
        Args:
            args: the command-line arguments after ``export``.
        """
        super().__init__(args=args, run=False, parser_kwargs={"prog": "snn-lightning export"})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--ckpt_path", type=str, required=True, help="The .ckpt file whose weights are exported.")
        parser.add_argument(
            "--format",
            type=ExportFormat,
            default="nir",
            help="nir: NIR's HDF5 file (nir.read; spiking ResNets); onnx: an ONNX model (reference operators, dynamic batch).",
        )
        parser.add_argument(
            "--output",
            type=str | None,
            default=None,
            help="File to write; null writes <ckpt_path without .ckpt>.nir (or .onnx).",
        )
        parser.add_argument(
            "--dt",
            type=float,
            default=1.0,
            help="nir: the simulator step in seconds the time constants are written for; 1 counts time in steps "
            "(SpikingJelly, Norse), 1e-4 suits snnTorch's importer, which fixes its step at 1e-4 s.",
        )
        parser.add_argument(
            "--weights_only",
            type=bool,
            default=True,
            help="Load the checkpoint with torch.load(weights_only=True); turn off only for files you trust.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        # `main` passes the arguments after `export`, which Lightning takes for a mistake when sys.argv is set too.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)

    def instantiate_classes(self) -> None:
        """Build the model and the data module only: export runs no trainer."""
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self.config_init.get("data")
        self.model = self.config_init.get("model")


def _load_weights(model: L.LightningModule, ckpt_path: str, weights_only: bool) -> None:
    """Load the weights of checkpoint ``ckpt_path`` into ``model``, or raise :class:`CheckpointError`."""
    file = Path(ckpt_path).expanduser()
    if ckpt_path in SPECIAL_CKPT_PATHS or not file.is_file():
        special = ckpt_path in SPECIAL_CKPT_PATHS
        where = "is resolved only by fit, validate and test" if special else missing_file_reason(file, CHECKPOINT_FILES)
        raise CheckpointError(
            f"checkpoint {ckpt_path} {where}; give export the path of a .ckpt file, "
            f"e.g. --ckpt_path logs/quickstart/latest/checkpoints/best.ckpt"
        )
    checkpoint = read_checkpoint(ckpt_path, weights_only)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint {ckpt_path} does not fit the configured model: {state_dict_mismatch(str(error))}; pass the "
            f"config it was trained with (config.yaml in its run folder)"
        ) from error


def _write(graph: nir.NIRGraph, output: Path) -> None:
    """Write ``graph`` to ``output`` as NIR's HDF5 file; raise :class:`OutputDirError` when that cannot be written."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        nir.write(output, graph)
    except OSError as error:
        raise OutputDirError(f"cannot write {output} ({error.strerror or error}); choose another --output") from error


def export(args: list[str]) -> Path:
    """Run ``snn-lightning export`` with the arguments after ``export``; return the file written.

    Args:
        args: command-line arguments (``--config``, ``--ckpt_path``, ``--format``, ``--output``, model settings).
    """
    cli = ExportCLI(args)
    config = cli.config
    network = getattr(cli.model, "network", None)
    if config["format"] == "onnx":
        return _export_onnx(cli, network)
    if not isinstance(network, SpikingResNet):
        raise ConfigurationError(
            f"export writes spiking ResNets to NIR, but the model {type(cli.model).__name__} has "
            f"{type(network).__name__ if network is not None else 'no network'}; choose an SNNClassifier config "
            f"with a ResNet arch, or --format onnx"
        )
    _load_weights(cli.model, config["ckpt_path"], config["weights_only"])
    input_shape = input_shape_of(cli.datamodule)
    graph = to_nir(network, input_shape, config["dt"])
    output = _output_path(config, ".nir")
    _write(graph, output)
    neurons = sum(isinstance(node, (nir.LIF, nir.IF)) for node in graph.nodes.values())
    print(
        f"wrote {output}: NIR graph of {type(cli.model).__name__} from {config['ckpt_path']} "
        f"({len(graph.nodes)} nodes, {neurons} spiking layers, input {'x'.join(map(str, input_shape))}, "
        f"{network.num_classes} classes, {network.time_steps} time steps)"
    )
    return output


def _output_path(config: dict, suffix: str) -> Path:
    """Return ``--output``, or the checkpoint's path with ``suffix``, as an absolute path."""
    return Path(config["output"] or Path(config["ckpt_path"]).with_suffix(suffix)).expanduser().absolute()


def _export_onnx(cli: ExportCLI, network: torch.nn.Module | None) -> Path:
    """Write the model's network as ONNX (input ``images``, output ``logits [T, batch, classes]``); return the file."""
    if network is None:
        raise ConfigurationError(
            f"export --format onnx writes the model's `network`, which {type(cli.model).__name__} has not; "
            f"choose an SNNClassifier, DistillationModule or ANNClassifier config"
        )
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"export --format onnx needs {' and '.join(missing)} (not installed here); "
            f"pip install 'snn-lightning[onnx]' (or pip install onnx onnxscript)"
        )
    config = cli.config
    _load_weights(cli.model, config["ckpt_path"], config["weights_only"])
    input_shape = input_shape_of(cli.datamodule)
    frames = None
    if isinstance(cli.datamodule, EventDataModule):
        frames = cli.datamodule.frames or network.time_steps
    output = _output_path(config, ".onnx")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        to_onnx(network, input_shape, output, frames)
    except OSError as error:
        raise OutputDirError(f"cannot write {output} ({error.strerror or error}); choose another --output") from error
    shape = (
        "x".join(map(str, input_shape)) if frames is None else f"{frames} frames of {'x'.join(map(str, input_shape))}"
    )
    print(
        f"wrote {output}: ONNX model of {type(cli.model).__name__} from {config['ckpt_path']} "
        f"(input `images` batch x {shape}, output `logits` [T, batch, classes])"
    )
    return output
