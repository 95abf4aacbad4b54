"""The ResNet backbone of HybrIK's published ResNet-34 regressor, without torchvision.

The parameter names are those of HybrIK's own backbone module (``preact`` in the
checkpoints): ``conv1``, ``bn1``, ``layer1`` .. ``layer4``, each block holding ``conv1``,
``bn1``, ``conv2``, ``bn2`` and, where the block changes resolution or width,
``downsample.0`` (1x1 convolution) and ``downsample.1`` (batch norm). There is no
classifier (``fc``): the published module has none, so a checkpoint has no such keys.
"""
from __future__ import annotations

import torch
from torch import nn

#: Blocks per stage of ResNet-34.
RESNET34_LAYERS: tuple[int, int, int, int] = (3, 4, 6, 3)
#: Channels of the last stage: what the heads read.
FEATURE_CHANNELS = 512


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet-18/34's block).

    Args:
        inplanes: input channels; planes: output channels; stride: of the first conv.
        downsample: the shortcut's projection, where shapes change.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inplanes, H, W) -> (B, planes, H / stride, W / stride)."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet stem and four stages, returning the last stage's feature map.

    Args:
        layers: blocks per stage (ResNet-34: 3, 4, 6, 3).
    """

    def __init__(self, layers: tuple[int, int, int, int] = RESNET34_LAYERS) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(64, layers[0], stride=1)
        self.layer2 = self._stage(128, layers[1], stride=2)
        self.layer3 = self._stage(256, layers[2], stride=2)
        self.layer4 = self._stage(512, layers[3], stride=2)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        stage = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        stage += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, 512, H / 32, W / 32) features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
