"""LightningModules: the spiking classifier and the ANN classifier (teacher)."""

from snn_lightning.modules.ann_classifier import ANNClassifier
from snn_lightning.modules.base import ClassifierModule
from snn_lightning.modules.snn_classifier import SNNClassifier

__all__ = ["ClassifierModule", "SNNClassifier", "ANNClassifier"]
