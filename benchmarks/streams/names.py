"""Stream names and data layouts, without torch: what can be checked before any import.

A stream is named ``dataset:B{base}-C{inc}`` with optional ``?key=value&...`` options
(e.g. ``digits:B0-C2?data_seed=1``); ``dataset:B{n}`` (n the number of classes) is the
offline protocol, one session with every class. A key may appear once; the options are
split by ``strategies/keyvalue.py``, the parser the memory selections share.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from strategies import keyvalue


class StreamError(ValueError):
    """A stream request a user can fix: unknown name, bad protocol, missing data."""


_PROTOCOL = re.compile(r"^B(\d+)(?:-C(\d+))?$")


@dataclass(frozen=True)
class StreamName:
    """A parsed stream name: dataset, protocol (base, increment) and options; ``inc`` 0 is
    the offline protocol ``B{base}``, one session with all classes."""

    dataset: str
    base: int
    inc: int
    options: dict = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return f"B{self.base}-C{self.inc}" if self.inc else f"B{self.base}"

    def __str__(self) -> str:
        opts = "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.dataset}:{self.protocol}" + (f"?{opts}" if opts else "")


def parse_name(name: str) -> StreamName:
    """Parse ``dataset:B{base}-C{inc}[?k=v&...]`` or ``dataset:B{n}[?k=v&...]``; a bare
    ``dataset`` is an error."""
    head, query = keyvalue.split(name)
    dataset, _, protocol = head.partition(":")
    match = _PROTOCOL.match(protocol)
    if not dataset or not match:
        raise StreamError(
            f"bad stream name {name!r}: expected dataset:B<base>-C<inc>[?key=value] or "
            "dataset:B<all classes>, e.g. digits:B0-C2, coco:B40-C10 or voc:B20"
        )
    try:
        options = keyvalue.pairs(query)
    except keyvalue.PairError as exc:
        raise StreamError(f"bad stream option {exc} in {name!r}: expected key=value, each "
                          "key once") from None
    base, inc = int(match.group(1)), int(match.group(2) or 0)
    if match.group(2) and inc <= 0:
        raise StreamError(f"bad protocol {protocol!r} in {name!r}: the increment must be >= 1")
    return StreamName(dataset, base, inc, options)


def session_splits(num_classes: int, base: int, inc: int) -> list[list[int]]:
    """Class indices (arrival order) of each session for protocol B{base}-C{inc}; ``inc`` 0
    (protocol B{base}) is one session that must hold all classes."""
    if not inc:
        if base != num_classes:
            raise StreamError(f"protocol B{base} is one session with all classes: "
                              f"need B{num_classes}")
        return [list(range(num_classes))]
    first = base or inc
    if first > num_classes or (num_classes - first) % inc:
        raise StreamError(
            f"protocol B{base}-C{inc} does not divide {num_classes} classes: "
            f"need base + k*inc == {num_classes}"
        )
    bounds = list(range(first, num_classes + 1, inc))
    starts = [0] + bounds[:-1]
    return [list(range(s, e)) for s, e in zip(starts, bounds)]


@dataclass(frozen=True)
class Layout:
    """Where a real dataset's files live under ``--data-root``: the ``parts`` that must
    exist, a sentence for the error, and the sub-folders tried in turn."""

    parts: Sequence[str]
    text: str
    subdirs: Sequence[str] = ("",)

    def locate(self, dataset: str, data_root: Optional[str]) -> Path:
        """The first folder ``data_root/sub`` holding every part (existence checks only);
        otherwise a one-line StreamError naming what is missing and the expected layout."""
        if data_root is None:
            reason = "no data root given"
        else:
            root = Path(data_root).expanduser()
            for sub in self.subdirs:
                if all((root / sub / part).exists() for part in self.parts):
                    return root / sub
            first = root / self.subdirs[0]
            reason = "missing " + str(next(first / p for p in self.parts
                                           if not (first / p).exists()))
        raise StreamError(f"{dataset} data not found ({reason}): expected {self.text}; "
                          "nothing is downloaded unless asked: place the files there and pass "
                          "--data-root, or add --download to fetch them there")
