"""The baseline of a results folder: which cells every other row is paired with.

A baseline is named ``METHOD``, ``METHOD(key=value, ...)`` for a hyperparameter override,
``METHOD[key=value, ...]`` for a training flag, or both (``replay(negatives=seen)``,
``replay[selection=herding]``):

- ``METHOD``: the method at its defaults, or tuned (a tuned baseline meets the rows tuned
  with the same budget: each method has its own tuned learning rate);
- ``METHOD(...)``: the method with exactly these overrides;
- ``METHOD[...]``: the method under exactly these training flags; its rows are paired on
  stream and threads only, so that one training flag is compared with another.

One rule picks it, for ``benchmarks.run`` and ``benchmarks.report`` alike: the baseline given
(``--baseline``), else the one recorded in the folder (``OUT/baseline.txt``, written by the
first command that rendered the folder and by every ``--baseline``), else ``replay`` when
the folder has it, else the first method of the first grid run there (``--methods``
order). Whatever was chosen is recorded, so a re-render pairs to the same baseline.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd
import yaml

from benchmarks.runner.store import write_text

DEFAULT = "replay"
FILE = "baseline.txt"
_SPEC = re.compile(r"^([A-Za-z0-9_.-]+)(?:\(([^()]*)\))?(?:\[([^\[\]]*)\])?$")


class BaselineError(ValueError):
    """A baseline name that cannot be read."""


@dataclass(frozen=True)
class Baseline:
    """A parsed baseline name; ``hparams`` / ``train`` are None when not given."""

    method: str
    hparams: Optional[dict] = None
    train: Optional[dict] = None

    @property
    def name(self) -> str:
        return (self.method + (f"({_text(self.hparams)})" if self.hparams is not None else "")
                + (f"[{_text(self.train)}]" if self.train is not None else ""))

    def cells(self, seeds: pd.DataFrame) -> pd.Series:
        """A mask of the baseline's cells among ``seeds`` (per_seed rows)."""
        mine = seeds["method"] == self.method
        hparams = seeds["hparams_config"].fillna("").map(parse_items)
        if self.hparams is not None:
            mine &= hparams.map(lambda h: _same(h, self.hparams))
        else:
            mine &= (hparams.map(len) == 0) | (seeds["tuning"].fillna("") != "")
        if self.train is not None:
            mine &= seeds["train_config"].fillna("").map(
                lambda text: _same(parse_items(text), self.train))
        return mine

    def keys(self, paired_on: list[str]) -> list[str]:
        """What a row must share with the baseline: ``paired_on``, less the training config
        when the baseline names its training flags."""
        return [k for k in paired_on if self.train is None or k != "paired_config"]


def parse(text: str) -> Baseline:
    """``METHOD[(k=v, ...)][[k=v, ...]]`` as a Baseline; BaselineError when malformed."""
    match = _SPEC.match(text.strip())
    if not match:
        raise BaselineError(f"--baseline {text!r} is not METHOD, METHOD(key=value, ...) or "
                            "METHOD[key=value, ...], e.g. replay(negatives=seen)")
    method, hparams, train = match.groups()
    try:
        return Baseline(method, None if hparams is None else parse_items(hparams, strict=True),
                        None if train is None else parse_items(train, strict=True))
    except ValueError as exc:
        raise BaselineError(f"--baseline {text!r}: {exc}") from None


def parse_items(text: str, strict: bool = False) -> dict:
    """``"a=1, b=x"`` (as the report writes configs; ``&`` also separates) as typed values."""
    items = {}
    for part in filter(None, (p.strip() for p in re.split(r"[,&]", text))):
        key, sep, value = part.partition("=")
        if strict and not (sep and key.strip()):
            raise ValueError(f"expected key=value, got {part!r}")
        try:
            items[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError:
            items[key.strip()] = value.strip()
    return items


def _same(a: dict, b: dict) -> bool:
    """Equal overrides, numbers compared as numbers (``2`` is ``2.0``)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or _number(a[k]) is not None and _number(a[k]) == _number(b[k]) for k in a)


def _number(value) -> Optional[float]:
    try:
        return None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _text(items: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in items.items())


def choose(out, given: Optional[str], methods: Iterable[str]) -> str:
    """The folder's baseline by the rule of the module docstring; ``methods`` in the order
    the fallback takes them (a grid's --methods, or the folder's methods sorted)."""
    if given:
        return parse(given).name
    recorded = read(out)
    if recorded:
        return recorded
    methods = list(dict.fromkeys(methods))
    return DEFAULT if DEFAULT in methods else (methods[0] if methods else DEFAULT)


def read(out) -> Optional[str]:
    """The baseline recorded in folder ``out``, or None."""
    path = Path(out) / FILE
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return parse(text).name if text else None
    except BaselineError:
        return None


def record(out, name: str) -> Path:
    """Record ``name`` as folder ``out``'s baseline."""
    return write_text(Path(out) / FILE, name + "\n")
