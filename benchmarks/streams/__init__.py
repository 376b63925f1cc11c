"""Datasets -> Avalanche class-incremental streams.

``build("digits:B0-C2")`` returns a :class:`BuiltStream` (the Avalanche benchmark with
``train_stream``, ``test_stream``, ``joint_stream`` and optionally ``valid_stream``, plus a
:class:`StreamInfo`). Each dataset module registers itself with :func:`register`.

Every option is checked (type, range, choices) by :func:`parse` before any data is read, and
:func:`check` refuses a stream whose images would clearly not fit in this machine's memory,
and an embedded stream with an empty session. Options every dataset accepts: ``valid`` (fraction of the training images held out as a
validation split, by image, default 0) and ``eval`` (``test``, the default, or ``valid``:
evaluate on the validation split instead of the test set, for choosing hyperparameters
without looking at test numbers). Each dataset adds its own (e.g. ``data_seed``); a
single-label dataset may declare ``valid_by`` (``image`` or ``class``: how ``valid`` holds
out, see ``base.carve_validation``).
"""
from __future__ import annotations

import os
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
SEED_LIMITS = (0, 2 ** 32 - 1)


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
    limits: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    channels: int = 3
    pool_bytes: Callable[[dict], int] = lambda options: 0
    embedded: bool = False
    published_pretrained: bool = False


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


def register(name, *, label_mode, num_classes, protocols, recipe, options=None, limits=None,
             check=None, description="", channels=3, pool_bytes=None, embedded=False,
             published_pretrained=False):
    """Decorator registering ``fn(stream_name, data_root, image_size) -> StreamData``.

    ``num_classes`` is an int or a function of the parsed options; ``options`` maps each
    accepted option to its default (its type is the default's type) and ``limits`` a numeric
    option to its accepted ``(low, high)`` range (None: unbounded); ``data_seed`` is always
    checked. ``recipe`` is the default training recipe, ``channels`` the images' channels,
    ``pool_bytes(options)`` the memory the dataset holds its images in, ``embedded``
    marks a stream cheap enough to build when checking it, and ``published_pretrained`` a
    dataset whose published numbers start from ImageNet-pretrained weights.
    """
    count = num_classes if callable(num_classes) else (lambda opts, n=num_classes: n)
    opts = {**COMMON_OPTIONS, **(options or {})}
    bounds = {**({"data_seed": SEED_LIMITS} if "data_seed" in opts else {}), **(limits or {})}

    def deco(fn):
        _DATASETS[name] = Dataset(name, label_mode, count, list(protocols), fn, opts, check,
                                  description, bounds, dict(recipe), channels,
                                  pool_bytes or (lambda options: 0), embedded,
                                  published_pretrained)
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
        typed = kind(value)
    except ValueError:
        raise StreamError(f"option {key}={value!r} for {dataset.name!r} must be {kind.__name__}")
    low, high = dataset.limits.get(key, (None, None))
    if (low is not None and typed < low) or (high is not None and typed > high):
        accepted = (f"from {low} to {high}" if high is not None else f">= {low}") \
            if low is not None else f"<= {high}"
        raise StreamError(f"option {key}={value} for {dataset.name!r} is out of range; "
                          f"accepted: {kind.__name__} {accepted}")
    return typed


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


def check(name: str, data_root: Optional[str] = None, image_size: Optional[int] = None,
          batch_size: Optional[int] = None) -> None:
    """Raise StreamError if ``name`` is invalid, its data is missing under ``data_root``, its
    images (held pools plus two batches at ``image_size``) would not fit in this machine's
    memory, or an embedded stream has a session without training or test images."""
    dataset, parsed = parse(name)
    side = image_size or parsed.options.get("size") or dataset.recipe["image_size"]
    batch = batch_size or dataset.recipe["batch_size"]
    need = dataset.pool_bytes(parsed.options) + 2 * batch * dataset.channels * side ** 2 * 4
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise StreamError(f"{name} at image size {side} and batch size {batch} needs about "
                          f"{need / 2 ** 30:.0f} GiB for its images alone, more than this "
                          f"machine's {have / 2 ** 30:.0f} GiB: lower its sizes")
    if dataset.check is not None:
        dataset.check(parsed, data_root)
    if dataset.embedded:
        _check_sessions(name, build(name, data_root, image_size).benchmark)


def _check_sessions(name: str, benchmark) -> None:
    for kind in ("train", "test"):
        for t, exp in enumerate(getattr(benchmark, f"{kind}_stream")):
            if not len(exp.dataset):
                raise StreamError(f"session {t} of {name} has no {kind} image: raise the "
                                  "stream's sizes or lower its ratio")


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
            train_sets, data.full_train_labels, info.sessions, parsed.options["valid"], seed,
            parsed.options.get("valid_by", "image"))
        if parsed.options["eval"] == "valid":
            test_sets = valid_sets
    joint = cumulative_sets(train_sets, data.full_train_labels, info.sessions, info.label_mode)
    return BuiltStream(make_benchmark(train_sets, test_sets, joint, valid_sets), info,
                       data.full_train_labels)


# Registration happens on import of each dataset module.
from . import cifar100lt, coco, digits, synthetic, voc  # noqa: E402,F401

__all__ = ["BuiltStream", "LabelledSet", "StreamData", "StreamError", "StreamInfo",
           "build", "check", "datasets", "parse", "register", "session_splits"]
