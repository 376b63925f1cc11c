"""``name?key=value&key=value`` option strings, parsed and typed without torch.

The one parser of both layers' options: a memory selection's (``strategies/options.py``,
e.g. ``prs?rho=0.5``) and a stream name's (``benchmarks/streams``, e.g.
``digits:B0-C2?ratio=50&data_seed=1``). It lives in ``strategies/`` because ``benchmarks/``
may import ``strategies/`` and not the other way round. A value takes the type of its
option's default (int, float or str; a float must be finite) and may be limited to choices
or a closed range. Errors are exceptions with fields, so that each layer words its own
one-line messages (they name the stream or the selection).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence


class PairError(ValueError):
    """A ``key=value&...`` list that does not parse: ``pair``, a piece without a key or
    ``=``; or ``key``, a key given twice (the other field is None)."""

    def __init__(self, pair: Optional[str] = None, key: Optional[str] = None):
        super().__init__(repr(pair) if key is None else f"{key!r} given twice")
        self.pair, self.key = pair, key


class Refused(ValueError):
    """A value its option does not accept. ``problem`` is ``type`` (not a ``kind``, or a
    float that is not finite), ``choice`` (not one of ``choices``) or ``range`` (outside the
    range ``accepted`` words, e.g. ``float from 1 to 1000``)."""

    def __init__(self, problem: str, kind: type, choices: Sequence = (), accepted: str = ""):
        super().__init__(f"{problem}: {accepted or ', '.join(map(str, choices)) or kind.__name__}")
        self.problem, self.kind, self.choices, self.accepted = problem, kind, choices, accepted


def split(text: str) -> tuple[str, str]:
    """``"prs?rho=0"`` as ``("prs", "rho=0")``: the name and its (unparsed) options."""
    name, _, query = str(text).partition("?")
    return name, query


def pairs(query: str) -> dict[str, str]:
    """``key=value&key=value`` as a dict of strings (empty pieces skipped); PairError for a
    piece without a key or ``=``, or a key given twice."""
    options = {}
    for pair in filter(None, query.split("&")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PairError(pair=pair)
        if key in options:
            raise PairError(key=key)
        options[key] = value
    return options


def range_text(kind: type, low, high) -> str:
    """A closed range in words: ``float from 1 to 1000``, ``int >= 0``, ``float <= 1``."""
    if low is None:
        return f"{kind.__name__} <= {high}"
    return f"{kind.__name__} " + (f"from {low} to {high}" if high is not None else f">= {low}")


def typed(raw: str, default: Any, choices: Optional[Sequence] = None, low=None,
          high=None) -> Any:
    """``raw`` as the type of ``default``, checked against ``choices`` and the closed range
    ``[low, high]`` (None: unbounded); Refused otherwise."""
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or kind is float and not math.isfinite(value):
        raise Refused("type", kind)
    if choices is not None and value not in choices:
        raise Refused("choice", kind, choices=tuple(choices))
    if (low is not None and value < low) or (high is not None and value > high):
        raise Refused("range", kind, accepted=range_text(kind, low, high))
    return value
