"""Datasets -> Avalanche class-incremental streams.

``build("digits:B0-C2")`` returns a :class:`BuiltStream` (the Avalanche benchmark with
``train_stream``, ``test_stream``, ``joint_stream`` and optionally ``valid_stream``, plus a
:class:`StreamInfo`). Each dataset module registers itself with :func:`register`.

Options every dataset accepts: ``valid`` (fraction of the training images held out as a
validation split, by image, default 0) and ``eval`` (``test``, the default, or ``valid``:
evaluate on the validation split instead of the test set, for choosing hyperparameters
without looking at test numbers). Each dataset adds its own (e.g. ``data_seed``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from .base import (
    LabelledSet,
    StreamError,
    StreamInfo,
    StreamName,
    carve_validation,
    cumulative_sets,
    make_benchmark,
    parse_name,
    session_splits,
)

COMMON_OPTIONS = {"valid": 0.0, "eval": "test"}
EVAL_SPLITS = ("test", "valid")


@dataclass
class StreamData:
    """What a dataset builder returns; :func:`build` assembles the benchmark from it.

    ``full_train_labels`` are the full multi-hot labels indexed by pool index (multi-label)
    or the class indices (single-label); they feed the joint (cumulative) stream.
    """

    info: StreamInfo
    train_sets: list[LabelledSet]
    test_sets: list[LabelledSet]
    full_train_labels: Any


@dataclass
class Dataset:
    """A registered dataset: how to check and build its streams."""

    name: str
    label_mode: str
    num_classes: Callable[[dict], int]
    protocols: list[str]
    build: Callable[[StreamName, Optional[str], Optional[int]], StreamData]
    options: dict = field(default_factory=dict)
    check: Optional[Callable[[StreamName, Optional[str]], None]] = None
    description: str = ""


_DATASETS: dict[str, Dataset] = {}


@dataclass
class BuiltStream:
    """A built stream; unpacks as ``benchmark, info``. ``train_labels`` are the full training
    labels by pool index (multi-hot rows or class indices): for measurement only (e.g. the
    true labels behind a memory's partial ones), never handed to a method."""

    benchmark: Any
    info: StreamInfo
    train_labels: Any = None

    def __iter__(self):
        return iter((self.benchmark, self.info))


def register(name, *, label_mode, num_classes, protocols, options=None, check=None,
             description=""):
    """Decorator registering ``fn(stream_name, data_root, image_size) -> StreamData``.

    ``num_classes`` is an int or a function of the parsed options; ``options`` maps each
    accepted option to its default (its type is the default's type).
    """
    count = num_classes if callable(num_classes) else (lambda opts, n=num_classes: n)

    def deco(fn):
        _DATASETS[name] = Dataset(name, label_mode, count, list(protocols), fn,
                                  {**COMMON_OPTIONS, **(options or {})}, check, description)
        return fn

    return deco


def datasets() -> dict[str, Dataset]:
    """All registered datasets by name."""
    return dict(_DATASETS)


def _typed(dataset: Dataset, key: str, value: str):
    if key not in dataset.options:
        raise StreamError(
            f"unknown option {key!r} for dataset {dataset.name!r}; accepted: "
            + ", ".join(f"{k} (default {v})" for k, v in dataset.options.items())
        )
    kind = type(dataset.options[key])
    try:
        return kind(value)
    except ValueError:
        raise StreamError(f"option {key}={value!r} for {dataset.name!r} must be {kind.__name__}")


def parse(name: str) -> tuple[Dataset, StreamName]:
    """Validate a stream name without loading data: dataset, options and protocol."""
    parsed = parse_name(name)
    if parsed.dataset not in _DATASETS:
        raise StreamError(
            f"unknown dataset {parsed.dataset!r} in stream {name!r}; known: "
            + ", ".join(sorted(_DATASETS))
        )
    dataset = _DATASETS[parsed.dataset]
    options = {k: _typed(dataset, k, v) for k, v in parsed.options.items()}
    parsed = replace(parsed, options={**dataset.options, **options})
    session_splits(dataset.num_classes(parsed.options), parsed.base, parsed.inc)
    if not 0.0 <= parsed.options["valid"] < 1.0:
        raise StreamError(f"option valid={parsed.options['valid']} must be in [0, 1)")
    if parsed.options["eval"] not in EVAL_SPLITS:
        raise StreamError(f"option eval={parsed.options['eval']!r} must be one of: "
                          + ", ".join(EVAL_SPLITS))
    if parsed.options["eval"] == "valid" and not parsed.options["valid"]:
        raise StreamError(f"option eval=valid in {name!r} needs a validation split, "
                          "e.g. ?valid=0.1&eval=valid")
    return dataset, parsed


def check(name: str, data_root: Optional[str] = None) -> None:
    """Raise StreamError if ``name`` is invalid or its data is missing under ``data_root``."""
    dataset, parsed = parse(name)
    if dataset.check is not None:
        dataset.check(parsed, data_root)


def build(name: str, data_root: Optional[str] = None, image_size: Optional[int] = None,
          ) -> BuiltStream:
    """Build the stream ``name``; ``image_size`` overrides the recipe's input size."""
    dataset, parsed = parse(name)
    if dataset.check is not None:
        dataset.check(parsed, data_root)
    data = dataset.build(parsed, data_root, image_size)
    info = data.info
    info.name = name
    train_sets, test_sets, valid_sets = data.train_sets, data.test_sets, None
    if parsed.options["valid"] > 0:
        seed = int(parsed.options.get("data_seed", 0))
        train_sets, valid_sets, info.class_counts = carve_validation(
            train_sets, data.full_train_labels, info.sessions, parsed.options["valid"], seed)
        if parsed.options["eval"] == "valid":
            test_sets = valid_sets
    joint = cumulative_sets(train_sets, data.full_train_labels, info.sessions, info.label_mode)
    return BuiltStream(make_benchmark(train_sets, test_sets, joint, valid_sets), info,
                       data.full_train_labels)


# Registration happens on import of each dataset module.
from . import cifar100lt, coco, digits, synthetic, voc  # noqa: E402,F401

__all__ = ["BuiltStream", "LabelledSet", "StreamData", "StreamError", "StreamInfo",
           "build", "check", "datasets", "parse", "register", "session_splits"]
