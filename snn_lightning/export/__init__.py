"""Export trained spiking networks: NIR, the neuromorphic interchange format, and ONNX (``snn-lightning export``)."""

from snn_lightning.export.nir_export import SUPPORTED, fold_batchnorm, lif_node, to_nir
from snn_lightning.export.onnx_export import to_onnx, with_reference_operators

__all__ = ["to_nir", "to_onnx", "with_reference_operators", "fold_batchnorm", "lif_node", "SUPPORTED"]
