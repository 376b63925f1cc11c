"""The backbone names ``--backbone`` accepts, known without importing torch
(``benchmarks/models.py`` builds them)."""
from __future__ import annotations

NAMES = ("smallcnn", "resnet32", "resnet18", "resnet50")


def check(name: str) -> None:
    """ValueError (one line, what is accepted) unless ``name`` is a backbone the suite builds."""
    if name not in NAMES:
        raise ValueError(f"argument --backbone: invalid choice: {name!r} (choose from "
                         f"{', '.join(sorted(NAMES))})")
