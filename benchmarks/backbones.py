"""The backbone names ``--backbone``, the head initialisations ``--head-init`` and the
weights ``--pretrained`` accept, known without importing torch (``benchmarks/models.py``
builds them; it also checks a ``timm:<model>`` name against the installed timm, which needs
torch).

``--pretrained`` is a local weights file, or ``timm:<model>.<tag>`` (e.g.
``timm:tresnet_m.miil_in21k``): timm's published weights, which ``--download`` fetches once
through timm's hub loading and saves to :func:`weights_file`, where every cell reads them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

NAMES = ("smallcnn", "resnet32", "resnet18", "resnet50", "resnet101")
TIMM = "timm:"
HEAD_INITS = ("linear", "kaiming")  # the first is the default
WEIGHTS_ENV = "IMBACIL_WEIGHTS"  # where named weights are saved (default ~/.cache/imbacil/weights)


def check(name: str) -> None:
    """ValueError (one line, what is accepted) unless ``name`` is a backbone the suite builds
    or has the form ``timm:<model>``."""
    if name.startswith(TIMM) and name[len(TIMM):]:
        return
    if name not in NAMES:
        raise ValueError(f"argument --backbone: invalid choice: {name!r} (choose from "
                         f"{', '.join(NAMES)}, or timm:<model>, e.g. timm:tresnet_m)")


def is_named(pretrained: str) -> bool:
    """True for weights named ``timm:<model>.<tag>`` rather than given as a file."""
    return pretrained.startswith(TIMM)


def weights_file(pretrained: str) -> Path:
    """The local file of ``pretrained``: the path itself, or for ``timm:<model>.<tag>`` the
    file ``--download`` saves it to: ``$IMBACIL_WEIGHTS/timm-<model>.<tag>.pth`` (default
    folder ``$XDG_CACHE_HOME/imbacil/weights``, i.e. ``~/.cache/imbacil/weights``)."""
    if not is_named(pretrained):
        return Path(pretrained)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(os.environ.get(WEIGHTS_ENV) or cache / "imbacil" / "weights")
    return folder.expanduser() / f"timm-{pretrained[len(TIMM):]}.pth"


def check_pretrained(pretrained: str, backbones: Iterable[str], download: bool) -> None:
    """ValueError (one line) unless ``pretrained`` is a local file, or ``timm:<model>.<tag>``
    for cells whose backbones are all ``timm:<model>``, saved already or to be fetched
    (``download``)."""
    if not is_named(pretrained):
        if not Path(pretrained).is_file():
            raise ValueError(f"--pretrained {pretrained}: no such file (give a local weights "
                             "file, or timm:<model>.<tag> with --download)")
        return
    model, dot, tag = pretrained[len(TIMM):].partition(".")
    if not (model and dot and tag):
        raise ValueError(f"--pretrained {pretrained}: name timm's weights with their tag, "
                         "timm:<model>.<tag>, e.g. timm:tresnet_m.miil_in21k (see "
                         "timm.list_pretrained())")
    other = sorted(set(backbones) - {TIMM + model})
    if other:
        raise ValueError(f"--pretrained {pretrained} fits backbone {TIMM + model}, not "
                         f"{', '.join(other)}: pass --backbone {TIMM + model}")
    if not download and not weights_file(pretrained).is_file():
        raise ValueError(f"--pretrained {pretrained}: not downloaded yet (no "
                         f"{weights_file(pretrained)}); add --download to fetch it through "
                         "timm, or give a local weights file")
