"""Backbones with one linear classifier over all classes of a stream.

``build(name, num_classes, in_channels, pretrained)`` returns a :class:`CILNet`: a backbone
``features(x) -> (B, D)`` and ``head``, an ``nn.Linear(D, num_classes)``. Unseen classes are
masked out of losses and metrics by the training template, not by the model.

Backbones: ``smallcnn`` (for the embedded digits canvases; fast on a CPU), ``resnet32`` (the
CIFAR ResNet of He et al. 2016, 3 stages x 5 basic blocks, 16/32/64 channels, as used by the
gradient-reweighting code), and torchvision's ``resnet18`` / ``resnet50``. Pretrained weights
come only from a local file (``pretrained=PATH``, a torchvision state dict); nothing is
downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torchvision import models as tv


class CILNet(nn.Module):
    """A backbone and a linear classifier; ``features`` is exposed for herding and PSD."""

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feat_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def small_cnn(in_channels: int) -> tuple[nn.Module, int]:
    net = nn.Sequential(_conv_bn(in_channels, 32), _conv_bn(32, 64, 2), _conv_bn(64, 128, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net, 128


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def resnet32(in_channels: int) -> tuple[nn.Module, int]:
    """The CIFAR ResNet-32, convolutions initialised Kaiming-normal (fan out) as in the
    official long-tailed CIL code."""
    layers, cin = [_conv_bn(in_channels, 16)], 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(5):
            layers.append(_BasicBlock(cin, cout, stride if i == 0 else 1))
            cin = cout
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net, 64


def _torchvision(arch: str):
    def make(in_channels: int) -> tuple[nn.Module, int]:
        net = getattr(tv, arch)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim
    return make


BACKBONES = {"smallcnn": small_cnn, "resnet32": resnet32,
             "resnet18": _torchvision("resnet18"), "resnet50": _torchvision("resnet50")}


def build(name: str, num_classes: int, in_channels: int = 3,
          pretrained: Optional[str] = None) -> CILNet:
    """A CILNet with backbone ``name``; ``pretrained`` is a local state-dict file."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    backbone, dim = BACKBONES[name](in_channels)
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise ValueError(f"pretrained weights {pretrained!r} not found: give a local "
                             "state-dict file (nothing is downloaded)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        backbone.load_state_dict(state, strict=True)
    return CILNet(backbone, dim, num_classes)
