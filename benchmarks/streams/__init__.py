"""Datasets -> Avalanche class-incremental streams.

``build("digits:B0-C2")`` returns a :class:`BuiltStream` (the Avalanche benchmark with
``train_stream``, ``test_stream``, ``joint_stream`` and optionally ``valid_stream``, plus a
:class:`StreamInfo`). What each dataset accepts (protocols, options and their ranges, data
layout, training recipe) is declared in ``catalog.py`` without torch, so :func:`parse`,
:func:`canonical` and :func:`check` answer before torch is imported; the builders, one
module per dataset, are imported only by :func:`build`.

Every option is checked (type, range, choices) by :func:`parse` before any data is read, and
:func:`check` refuses a stream whose images would clearly not fit in this machine's memory
(:func:`check_sessions`, which builds an embedded stream, refuses one with an empty
session). Options every dataset accepts: ``valid`` (fraction of the training images held out
as a validation split, by image, default 0) and ``eval`` (``test``, the default, or
``valid``: evaluate on the validation split instead of the test set, for choosing
hyperparameters without looking at test numbers). Each dataset adds its own (e.g.
``data_seed``); a single-label dataset may declare ``valid_by`` (``image`` or ``class``: how
``valid`` holds out, see ``base.carve_validation``). :func:`canonical` gives a stream its
one name: options sorted, values normalised, defaults dropped.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Optional

from strategies import keyvalue

from .names import Layout, StreamError, StreamName, parse_name, session_splits

if TYPE_CHECKING:
    from .base import LabelledSet, StreamInfo

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
    """A declared dataset: what its streams accept, and where its builder lives
    (``builder``: ``"module:function"`` inside this package)."""

    name: str
    label_mode: str
    num_classes: Callable[[dict], int]
    protocols: list[str]
    builder: str
    options: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    layout: Optional[Layout] = None
    description: str = ""
    recipe: dict = field(default_factory=dict)
    channels: int = 3
    pool_bytes: Callable[[dict], int] = lambda options: 0
    embedded: bool = False
    published_pretrained: bool = False

    def locate(self, data_root: Optional[str]):
        """The folder holding this dataset's files (StreamError naming the layout if not)."""
        return self.layout.locate(self.name, data_root)


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


def declare(name, *, label_mode, num_classes, protocols, builder, recipe, options=None,
            choices=None, limits=None, layout=None, description="", channels=3,
            pool_bytes=None, embedded=False, published_pretrained=False) -> Dataset:
    """Declare dataset ``name``, built by ``builder(stream_name, data_root, image_size) ->
    StreamData``.

    ``num_classes`` is an int or a function of the parsed options; ``options`` maps each
    accepted option to its default (its type is the default's type), ``choices`` a string
    option to its accepted values and ``limits`` a numeric option to its accepted ``(low,
    high)`` range (None: unbounded); ``data_seed`` is always checked. ``layout`` says where a
    real dataset's files live, ``recipe`` is the default training recipe, ``channels`` the
    images' channels, ``pool_bytes(options)`` the memory the dataset holds its images in,
    ``embedded`` marks a stream cheap enough to build when checking it, and
    ``published_pretrained`` a dataset whose published numbers start from
    ImageNet-pretrained weights.
    """
    count = num_classes if callable(num_classes) else (lambda opts, n=num_classes: n)
    opts = {**COMMON_OPTIONS, **(options or {})}
    bounds = {**({"data_seed": SEED_LIMITS} if "data_seed" in opts else {}), **(limits or {})}
    _DATASETS[name] = Dataset(name, label_mode, count, list(protocols), builder, opts,
                              {"eval": EVAL_SPLITS, **(choices or {})}, bounds, layout,
                              description, dict(recipe), channels,
                              pool_bytes or (lambda options: 0), embedded, published_pretrained)
    return _DATASETS[name]


def datasets() -> dict[str, Dataset]:
    """All declared datasets by name."""
    return dict(_DATASETS)


def _typed(dataset: Dataset, key: str, value: str):
    if key not in dataset.options:
        raise StreamError(
            f"unknown option {key!r} for dataset {dataset.name!r}; accepted: "
            + ", ".join(f"{k} (default {v})" for k, v in dataset.options.items())
        )
    low, high = dataset.limits.get(key, (None, None))
    try:
        return keyvalue.typed(value, dataset.options[key], dataset.choices.get(key), low, high)
    except keyvalue.Refused as exc:
        subject = f"option {key}={value!r} for {dataset.name!r}"
        if exc.problem == "type":
            what = f"a finite {exc.kind.__name__}" if exc.kind is float else exc.kind.__name__
            raise StreamError(f"{subject} must be {what}") from None
        if exc.problem == "choice":
            raise StreamError(f"{subject} must be one of: " + ", ".join(exc.choices)) from None
        raise StreamError(f"option {key}={value} for {dataset.name!r} is out of range; "
                          f"accepted: {exc.accepted}") from None


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
    if parsed.options["eval"] == "valid" and not parsed.options["valid"]:
        raise StreamError(f"option eval=valid in {name!r} needs a validation split, "
                          "e.g. ?valid=0.1&eval=valid")
    if parsed.options.get("valid_by") == "class" and not parsed.options["valid"]:
        raise StreamError(f"option valid_by=class in {name!r} needs a validation split, "
                          "e.g. ?valid=0.1&valid_by=class")
    return dataset, parsed


def _text(value) -> str:
    """An option value as the canonical name writes it: 10.0 -> 10, 0.10 -> 0.1."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def canonical(name: str) -> str:
    """The stream's one name: options that differ from their defaults, sorted by key, values
    normalised (``digits:B0-C2?test=150&train=300`` for ``?train=300&test=150``, and
    ``digits:B0-C2`` for ``?ratio=10.0``). Raises StreamError for an invalid name."""
    dataset, parsed = parse(name)
    options = {k: v for k, v in parsed.options.items() if v != dataset.options[k]}
    return str(replace(parsed, options={k: _text(v) for k, v in options.items()}))


def check(name: str, data_root: Optional[str] = None, image_size: Optional[int] = None,
          batch_size: Optional[int] = None, download: bool = False) -> None:
    """Raise StreamError if ``name`` is invalid, its data is missing under ``data_root`` (with
    ``download``: if no ``data_root`` is given to download it to), or its images (held pools
    plus two batches at ``image_size``) would not fit in this machine's memory. Needs no
    torch."""
    dataset, parsed = parse(name)
    side = image_size or parsed.options.get("size") or dataset.recipe["image_size"]
    batch = batch_size or dataset.recipe["batch_size"]
    need = dataset.pool_bytes(parsed.options) + 2 * batch * dataset.channels * side ** 2 * 4
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise StreamError(f"{name} at image size {side} and batch size {batch} needs about "
                          f"{need / 2 ** 30:.0f} GiB for its images alone, more than this "
                          f"machine's {have / 2 ** 30:.0f} GiB: lower its sizes")
    if dataset.layout is not None and not download:
        dataset.locate(data_root)
    elif dataset.layout is not None and data_root is None:
        raise StreamError(f"--download needs --data-root: the folder to put {dataset.name} "
                          "in (created if missing)")


def check_sessions(name: str, data_root: Optional[str] = None,
                   image_size: Optional[int] = None) -> None:
    """Raise StreamError if an embedded stream has a session without training or test
    images (it builds the stream: torch is imported)."""
    if not parse(name)[0].embedded:
        return
    benchmark = build(name, data_root, image_size).benchmark
    for kind in ("train", "test"):
        for t, exp in enumerate(getattr(benchmark, f"{kind}_stream")):
            if not len(exp.dataset):
                raise StreamError(f"session {t} of {name} has no {kind} image: raise the "
                                  "stream's sizes or lower its ratio")


def build(name: str, data_root: Optional[str] = None, image_size: Optional[int] = None,
          ) -> BuiltStream:
    """Build the stream ``name``; ``image_size`` overrides the recipe's input size."""
    from .base import carve_validation, cumulative_sets, make_benchmark

    dataset, parsed = parse(name)
    if dataset.layout is not None:
        dataset.locate(data_root)
    module, function = dataset.builder.split(":")
    data = getattr(importlib.import_module(f"{__name__}.{module}"), function)(
        parsed, data_root, image_size)
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


def __getattr__(attr):  # the torch-side names, imported on first use
    if attr in ("LabelledSet", "StreamInfo"):
        from . import base
        return getattr(base, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


from . import catalog  # noqa: E402,F401  (declares every dataset)

__all__ = ["BuiltStream", "Dataset", "Layout", "StreamData", "StreamError", "build",
           "canonical", "check", "check_sessions", "datasets", "declare", "parse",
           "session_splits"]
