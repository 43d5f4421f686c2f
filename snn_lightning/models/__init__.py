"""Network architectures as plain ``nn.Module``s: spiking ResNets and their ANN teachers (no Lightning)."""

from snn_lightning.models.ann_resnet import ANN_ARCHITECTURES, ANNArchitecture, ANNResNet, ann_resnet18, ann_resnet34
from snn_lightning.models.spiking_resnet import (
    SPIKING_ARCHITECTURES,
    SpikingArchitecture,
    SpikingBasicBlock,
    SpikingResNet,
    spiking_resnet18,
    spiking_resnet19,
    spiking_resnet20,
    spiking_resnet34,
    spiking_resnet_mini,
)

__all__ = [
    "SPIKING_ARCHITECTURES",
    "SpikingArchitecture",
    "SpikingBasicBlock",
    "SpikingResNet",
    "spiking_resnet_mini",
    "spiking_resnet18",
    "spiking_resnet19",
    "spiking_resnet20",
    "spiking_resnet34",
    "ANN_ARCHITECTURES",
    "ANNArchitecture",
    "ANNResNet",
    "ann_resnet18",
    "ann_resnet34",
]
