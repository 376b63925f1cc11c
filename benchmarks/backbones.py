"""The backbone names ``--backbone`` accepts, known without importing torch
(``benchmarks/models.py`` builds them; it also checks a ``timm:<model>`` name against the
installed timm, which needs torch)."""
from __future__ import annotations

NAMES = ("smallcnn", "resnet32", "resnet18", "resnet50", "resnet101")
TIMM = "timm:"


def check(name: str) -> None:
    """ValueError (one line, what is accepted) unless ``name`` is a backbone the suite builds
    or has the form ``timm:<model>``."""
    if name.startswith(TIMM) and name[len(TIMM):]:
        return
    if name not in NAMES:
        raise ValueError(f"argument --backbone: invalid choice: {name!r} (choose from "
                         f"{', '.join(NAMES)}, or timm:<model>, e.g. timm:tresnet_m)")
