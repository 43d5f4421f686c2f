"""LightningModules: the spiking classifier, the ANN classifier (teacher) and the distillation module."""

from snn_lightning.modules.ann_classifier import ANNClassifier
from snn_lightning.modules.base import ClassifierModule
from snn_lightning.modules.distillation import DistillationModule
from snn_lightning.modules.snn_classifier import SNNClassifier

__all__ = ["ClassifierModule", "SNNClassifier", "ANNClassifier", "DistillationModule"]
