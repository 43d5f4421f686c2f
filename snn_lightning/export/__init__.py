"""Export trained spiking networks: NIR, the neuromorphic interchange format (``snn-lightning export``)."""

from snn_lightning.export.nir_export import SUPPORTED, fold_batchnorm, lif_node, to_nir

__all__ = ["to_nir", "fold_batchnorm", "lif_node", "SUPPORTED"]
