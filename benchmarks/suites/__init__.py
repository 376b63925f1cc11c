"""Named, versioned stream suites: fixed lists of evaluation and tuning streams, as data.

A suite is one YAML file in this folder, ``<name>-v<version>.yaml`` (e.g. ``imbacil-v1.yaml``)::

    name: imbacil
    version: 1
    description: one sentence
    evaluation: [digits:B0-C2?data_seed=1, ...]     # what benchmarks.run --suite evaluates
    tuning: [digits:B0-C2?data_seed=101&valid=0.2, ...]   # what benchmarks.tune --suite tunes on

``--suite imbacil-v1`` names the file; the name carries the version, so a published suite is
never edited: a new set of streams is a new file (``imbacil-v2.yaml``), and a record's
``spec.suite`` (e.g. ``imbacil-v1``) says which one it belongs to. A suite is checked when
loaded: every stream valid, and no tuning stream shares its dataset and
``data_seed`` (class order, frequency ranks, source images) with an evaluation stream, so
none is an evaluation stream. Torch-free: a bad suite is an error before any import.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from benchmarks import streams
from benchmarks.streams.names import StreamError

FOLDER = Path(__file__).resolve().parent
KEYS = ("name", "version", "description", "evaluation", "tuning")
_FILE = re.compile(r"^(?P<name>[a-z0-9]+(?:-[a-z0-9]+)*)-v(?P<version>\d+)$")


class SuiteError(StreamError):
    """A suite request a user can fix (unknown name), or a suite file that breaks the rules."""


@dataclass(frozen=True)
class Suite:
    """A loaded suite; streams are canonical names (:func:`benchmarks.streams.canonical`)."""

    name: str
    version: int
    description: str
    evaluation: tuple
    tuning: tuple

    @property
    def label(self) -> str:
        """The suite's name with its version, as records and leaderboards name it."""
        return f"{self.name}-v{self.version}"

    def streams(self, kind: str = "evaluation", label_mode: Optional[str] = None) -> list[str]:
        """The ``kind`` (evaluation or tuning) streams, those of ``label_mode`` only if given."""
        return [name for name in getattr(self, kind)
                if label_mode is None or streams.parse(name)[0].label_mode == label_mode]

    def label_modes(self) -> list[str]:
        """The label modes of the evaluation streams, in order of first appearance."""
        return list(dict.fromkeys(streams.parse(n)[0].label_mode for n in self.evaluation))


def available(folder: Path = FOLDER) -> list[str]:
    """The suites shipped in ``folder``, by label (file name without ``.yaml``)."""
    return sorted(path.stem for path in folder.glob("*.yaml") if _FILE.match(path.stem))


def load(label: str, folder: Path = FOLDER) -> Suite:
    """The suite ``label`` (e.g. ``imbacil-v1``); SuiteError for an unknown label or a file
    that breaks the rules of the module docstring."""
    known = available(folder)
    if label not in known:
        raise SuiteError(f"unknown suite {label!r}; known: {', '.join(known) or 'none'}")
    path = folder / f"{label}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"suite file {path} cannot be read: {' '.join(str(exc).split())}")
    if not isinstance(data, dict) or set(data) != set(KEYS):
        raise SuiteError(f"suite file {path} must hold exactly the keys {', '.join(KEYS)}")
    match = _FILE.match(label)
    if (data["name"], data["version"]) != (match["name"], int(match["version"])):
        raise SuiteError(f"suite file {path} declares name {data['name']!r} version "
                         f"{data['version']!r}; its file name says {match['name']!r} version "
                         f"{match['version']}")
    lists = {}
    for kind in ("evaluation", "tuning"):
        names = data[kind]
        if not isinstance(names, list) or not names:
            raise SuiteError(f"suite {label}: {kind} must be a non-empty list of streams")
        try:
            lists[kind] = tuple(dict.fromkeys(streams.canonical(str(n)) for n in names))
        except StreamError as exc:
            raise SuiteError(f"suite {label}: {exc}") from None
    _check_disjoint(label, lists["evaluation"], lists["tuning"])
    return Suite(data["name"], int(data["version"]), str(data["description"]),
                 lists["evaluation"], lists["tuning"])


def _check_disjoint(label: str, evaluation: tuple, tuning: tuple) -> None:
    """SuiteError if a tuning stream shares its dataset and data seed (so its class order,
    frequency ranks and images) with an evaluation stream: then it is no held-out stream."""
    def seed(name):
        parsed = streams.parse(name)[1]
        return parsed.dataset, parsed.options.get("data_seed")

    shared = [n for n in tuning if seed(n) in {seed(e) for e in evaluation}]
    if shared:
        raise SuiteError(f"suite {label}: tuning stream(s) {', '.join(shared)} share their "
                         "dataset and data_seed with an evaluation stream")


def listing() -> list[str]:
    """Lines for ``--list``: each suite, its description and its streams."""
    lines = ["suites (--suite NAME; benchmarks.tune --suite tunes on the tuning streams):"]
    for label in available():
        suite = load(label)
        lines.append(f"  {label}  {' '.join(suite.description.split())}")
        for kind in ("evaluation", "tuning"):
            lines.append(f"      {kind}: " + ", ".join(getattr(suite, kind)))
    return lines
