"""The backbone names ``--backbone`` and the head initialisations ``--head-init`` accept,
known without importing torch (``benchmarks/models.py`` builds them; it also checks a
``timm:<model>`` name against the installed timm, which needs torch)."""
from __future__ import annotations

NAMES = ("smallcnn", "resnet32", "resnet18", "resnet50", "resnet101")
TIMM = "timm:"
HEAD_INITS = ("linear", "kaiming")  # the first is the default


def check(name: str) -> None:
    """ValueError (one line, what is accepted) unless ``name`` is a backbone the suite builds
    or has the form ``timm:<model>``."""
    if name.startswith(TIMM) and name[len(TIMM):]:
        return
    if name not in NAMES:
        raise ValueError(f"argument --backbone: invalid choice: {name!r} (choose from "
                         f"{', '.join(NAMES)}, or timm:<model>, e.g. timm:tresnet_m)")
