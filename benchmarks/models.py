"""Backbones with one linear classifier over all classes of a stream.

``build(name, num_classes, in_channels, pretrained, head_init)`` returns a :class:`CILNet`: a
backbone ``features(x) -> (B, D)`` and ``head``, an ``nn.Linear(D, num_classes)``. Unseen
classes are masked out of losses and metrics by the training template, not by the model (the
template also gives each class's head row its initial values when the class's first session
starts).

Head initialisation (``head_init``, a training-recipe option): ``linear`` (default) keeps
``nn.Linear``'s own, weight and bias uniform in +-1/sqrt(D); ``kaiming`` is PyCIL's
classifier (``SimpleLinear.reset_parameters`` in its convs/linears.py): weight
``kaiming_uniform_(nonlinearity="linear")``, uniform in +-sqrt(3/D), bias 0. PyCIL grows its
head each session (a new ``SimpleLinear`` over all seen classes, the old rows copied in), so
a class's row is drawn when its session starts; here the head covers every class from the
start and the template puts a new class's row back to its drawn values at its first session:
the same distribution per row, other draws. (``lucir`` replaces the head by its cosine head,
which keeps its own initialisation.)

Backbones: ``smallcnn`` (for the embedded digits canvases; fast on a CPU), ``resnet32`` (the
CIFAR ResNet of He et al. 2016, 3 stages x 5 basic blocks, 16/32/64 channels, as used by the
long-tailed CIL code), torchvision's ``resnet18`` / ``resnet50`` / ``resnet101``, and any
model of timm (pytorch-image-models) as ``timm:<name>`` (e.g. ``timm:tresnet_m``), built
without its classifier. Pretrained weights come from a local file (``pretrained=PATH``:
a torchvision state dict, or for ``timm:`` a checkpoint timm reads, converted by the model's
own checkpoint filter, e.g. the inplace-ABN TResNet checkpoints of ASL / KRT), or by name
(``pretrained="timm:tresnet_m.miil_in21k"``) from the file ``--download`` saved them to
(``backbones.weights_file``); the classifier's entries are dropped, every other weight must
fit. Nothing is downloaded here.

``CILNet.spatial_trunk()`` gives the backbone's last spatial feature map instead of its pooled
vector (same weights), for methods that put a module on top of the map (KRT).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torchvision import models as tv

from benchmarks.backbones import HEAD_INITS, TIMM, is_named, weights_file


class CILNet(nn.Module):
    """A backbone and a linear classifier; ``features`` is exposed for herding and PSD."""

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int,
                 head_init: str = HEAD_INITS[0]):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feat_dim, num_classes)
        init_head(self.head, head_init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def spatial_trunk(self) -> nn.Module:
        """The backbone up to its last feature map, before global pooling: a module sharing
        the backbone's weights whose output is (B, C, H, W) (a timm transformer's: its
        (B, N, C) tokens). For methods that attend over the map (KRT)."""
        return spatial_trunk(self.backbone)


def init_head(head: nn.Linear, kind: str) -> None:
    """Initialise ``head`` as ``kind`` says (see the module's docstring): ``linear`` leaves
    ``nn.Linear``'s initialisation; ``kaiming`` redraws the weight as PyCIL's SimpleLinear
    and zeroes the bias."""
    if kind not in HEAD_INITS:
        raise ValueError(f"unknown head initialisation {kind!r}; accepted: "
                         + ", ".join(HEAD_INITS))
    if kind == "kaiming":
        nn.init.kaiming_uniform_(head.weight, nonlinearity="linear")
        nn.init.zeros_(head.bias)


class _ForwardFeatures(nn.Module):
    """A timm model's ``forward_features`` (its map, before pooling and classifier)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def spatial_trunk(backbone: nn.Module) -> nn.Module:
    """See :meth:`CILNet.spatial_trunk`: ``smallcnn`` and ``resnet32`` without their final
    pooling and flattening, torchvision's ResNets up to ``layer4``, timm models by
    ``forward_features``."""
    if isinstance(backbone, nn.Sequential) and isinstance(backbone[-1], nn.Flatten) \
            and isinstance(backbone[-2], nn.AdaptiveAvgPool2d):
        return backbone[:-2]
    if isinstance(backbone, tv.ResNet):
        return nn.Sequential(*(getattr(backbone, name) for name in (
            "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")))
    if hasattr(backbone, "forward_features"):
        return _ForwardFeatures(backbone)
    raise ValueError(f"no spatial feature map known for backbone {type(backbone).__name__}")


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
             "resnet18": _torchvision("resnet18"), "resnet50": _torchvision("resnet50"),
             "resnet101": _torchvision("resnet101")}


def _timm_module():
    try:
        import timm
    except ImportError:
        raise ValueError("timm backbones need timm (pytorch-image-models): "
                         "pip install timm") from None
    return timm


def check_backbone(name: str) -> None:
    """Raise ValueError (one line) unless ``name`` is a known backbone or ``timm:<model>``
    of the installed timm."""
    if name.startswith(TIMM):
        arch = name[len(TIMM):]
        if not _timm_module().is_model(arch):
            raise ValueError(f"unknown timm model {arch!r} in backbone {name!r}; "
                             "see timm.list_models()")
    elif name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}, "
                         "or timm:<model> (e.g. timm:tresnet_m)")


def _timm_backbone(arch: str, in_channels: int) -> tuple[nn.Module, int]:
    net = _timm_module().create_model(arch, pretrained=False, num_classes=0,
                                      in_chans=in_channels)
    return net, net.num_features


def _weights(backbone: nn.Module, name: str, path: Path) -> dict:
    """The state dict in ``path`` for ``backbone``, its classifier entries dropped."""
    if not name.startswith(TIMM):
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if not k.startswith("fc.")}
    from timm.models import load_state_dict
    state = load_state_dict(str(path))
    convert = getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", None)
    if convert is not None:
        state = convert(state, backbone)
    classifier = backbone.pretrained_cfg.get("classifier") or ()
    heads = tuple(c + "." for c in ([classifier] if isinstance(classifier, str) else classifier))
    return {k: v for k, v in state.items() if not k.startswith(heads)}


def build(name: str, num_classes: int, in_channels: int = 3,
          pretrained: Optional[str] = None, head_init: str = HEAD_INITS[0]) -> CILNet:
    """A CILNet with backbone ``name``; ``pretrained`` is a local weights file or the name
    of downloaded timm weights; ``head_init`` one of HEAD_INITS."""
    check_backbone(name)
    if name.startswith(TIMM):
        backbone, dim = _timm_backbone(name[len(TIMM):], in_channels)
    else:
        backbone, dim = BACKBONES[name](in_channels)
    if pretrained:
        path = weights_file(pretrained)
        if not path.is_file():
            raise ValueError(f"pretrained weights {pretrained!r} not found" + (
                f" at {path}: fetch them with --download" if is_named(pretrained) else
                ": give a local weights file (nothing is downloaded)"))
        try:
            weights = _weights(backbone, name, path)
        except Exception as exc:  # torch.load's errors on a non-checkpoint vary (KeyError, ...)
            raise ValueError(f"pretrained weights {pretrained!r} are not a checkpoint torch "
                             f"can read ({type(exc).__name__}: {exc}); expected a state dict "
                             "saved with torch.save") from None
        try:
            backbone.load_state_dict(weights, strict=True)
        except (RuntimeError, KeyError) as exc:
            reason = " ".join(str(exc).split())
            raise ValueError(f"pretrained weights {pretrained!r} do not fit backbone "
                             f"{name!r}: {reason[:300]}") from None
    return CILNet(backbone, dim, num_classes, head_init)
