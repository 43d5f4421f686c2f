"""Network architectures as plain ``nn.Module``s: spiking ResNets and CNNs, STAA, their ANN teachers (no Lightning)."""

from snn_lightning.models.ann_resnet import ANN_ARCHITECTURES, ANNArchitecture, ANNResNet, ann_resnet18, ann_resnet34
from snn_lightning.models.architectures import SPIKING_ARCHITECTURES, SpikingArchitecture
from snn_lightning.models.complexity import Complexity, measure_complexity
from snn_lightning.models.spiking_convnet import CONVNET_LAYOUTS, SpikingConvNet, TimeSharedDropout
from snn_lightning.models.spiking_resnet import (
    SPIKING_RESNETS,
    SpikingBasicBlock,
    SpikingResNet,
    spiking_resnet18,
    spiking_resnet19,
    spiking_resnet20,
    spiking_resnet34,
    spiking_resnet_mini,
)
from snn_lightning.models.staa import (
    STAA,
    GlobalContext,
    STAALayer,
    StepAttention,
    TemporalPositionEncoding,
    TimeStepDropout,
)

__all__ = [
    "SPIKING_ARCHITECTURES",
    "SpikingArchitecture",
    "SPIKING_RESNETS",
    "CONVNET_LAYOUTS",
    "SpikingConvNet",
    "TimeSharedDropout",
    "SpikingBasicBlock",
    "SpikingResNet",
    "spiking_resnet_mini",
    "spiking_resnet18",
    "spiking_resnet19",
    "spiking_resnet20",
    "spiking_resnet34",
    "STAA",
    "STAALayer",
    "TemporalPositionEncoding",
    "GlobalContext",
    "StepAttention",
    "TimeStepDropout",
    "Complexity",
    "measure_complexity",
    "ANN_ARCHITECTURES",
    "ANNArchitecture",
    "ANNResNet",
    "ann_resnet18",
    "ann_resnet34",
]
