"""The grid: the user's options (CLI flags, a grid YAML) expanded into RunSpecs.

A grid is methods x streams x seeds x hyperparameter lists. ``sets`` fix one value per
``method.key``; ``grid`` gives a list of values per ``method.key``, and every combination of
one method's lists is a variant of that method. A grid YAML holds the CLI's options (flags
given on the command line win; paths are relative to the working directory)::

    methods: [lwf, finetune]
    streams: ["digits:B0-C2", "digits-lt:B0-C2"]
    seeds: [0, 1, 2]
    epochs: 2
    plugins: [my_methods.py]
    set: {lwf: {temperature: 1.0}}         # one value, like --set lwf.temperature=1.0
    grid: {lwf: {alpha: [0.5, 1.0, 2.0]}}  # three variants of lwf

``suite: imbacil-v1`` (like ``--suite``) stands for the streams of a named suite
(benchmarks/suites), in place of ``streams``.

``tuned`` (what ``benchmarks.tune`` writes) gives per method and stream the chosen
hyperparameters and learning rate, and how they were chosen::

    tuned: {lwf: {"digits:B0-C2": {hparams: {alpha: 2.3}, lr: 0.004, tuning: valid budget 8}}}

A tuned (method, stream) runs that one configuration (``set`` and a ``--lr`` still win).
``studies`` (also from ``benchmarks.tune``) holds each study's verdict, kept in the results
folder for the report (benchmarks/studies.py).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from benchmarks import streams
from methods import MethodError, check_label_mode, get, resolve_hparams

from .spec import RunSpec

# Keys of a grid YAML: the CLI's long options (underscored) plus ``grid``.
CONFIG_KEYS = ("methods", "streams", "seeds", "epochs", "batch_size", "lr", "optimizer", "memory",
               "memory_labels", "memory_selection", "head_init", "replay_batch",
               "backbone", "pretrained", "image_size", "amp", "channels_last", "reset_optimizer",
               "device", "data_root", "download", "set", "grid", "plugins", "workers", "threads",
               "executor", "ray_address", "ray_timeout", "ray_retries", "name", "out", "baseline",
               "tuned", "studies", "suite")
TUNED_KEYS = ("hparams", "lr", "tuning")


class GridError(ValueError):
    """A grid request a user can fix: a malformed list, seed, override or config file."""


@dataclass
class Grid:
    """The cells to run, and one line per (method, stream) pair skipped for its label mode."""

    specs: list[RunSpec]
    skipped: list[str]


def split_list(value) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` as a list of non-empty stripped strings."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for item in items if item.strip()]


MAX_SEED = 2 ** 32 - 1  # what numpy's seeding accepts


def parse_seeds(value) -> list[int]:
    """``"0,1,2"`` or ``[0, 1, 2]`` as a list of ints from 0 to 2**32 - 1 (no empty item)."""
    if isinstance(value, str) and value.strip() and any(
            not item.strip() for item in value.split(",")):
        raise GridError(f"seeds must be comma-separated integers without empty items, e.g. "
                        f"--seeds 0,1,2; got {value!r}")
    seeds = []
    for item in split_list(value):
        try:
            seeds.append(int(item))
        except ValueError:
            raise GridError(f"seeds must be integers, e.g. --seeds 0,1,2; got {item!r}")
        if not 0 <= seeds[-1] <= MAX_SEED:
            raise GridError(f"seed {item} is out of range; accepted: integers from 0 to "
                            f"{MAX_SEED}")
    if not seeds:
        raise GridError("no seeds given; expected integers, e.g. --seeds 0,1,2")
    return seeds


def parse_sets(items) -> dict[str, dict[str, str]]:
    """``["rebll.gamma_neg=2", ...]`` as ``{"rebll": {"gamma_neg": "2"}}`` (later wins)."""
    sets: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        method, dot, key = target.partition(".")
        if not (sep and dot and method and key):
            raise GridError(f"--set expects METHOD.KEY=VALUE, e.g. --set rebll.gamma_neg=2; "
                            f"got {item!r}")
        sets.setdefault(method, {})[key] = value
    return sets


def load_config(path) -> dict:
    """A grid YAML as a dict of options, with its keys checked."""
    file = Path(path)
    try:
        config = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise GridError(f"cannot read --config {path}: {exc.strerror}")
    except yaml.YAMLError as exc:
        raise GridError(f"--config {path} is not valid YAML: {' '.join(str(exc).split())}")
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise GridError(f"--config {path} must be a mapping of options; accepted keys: "
                        + ", ".join(CONFIG_KEYS))
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise GridError(f"unknown key(s) {', '.join(unknown)} in --config {path}; accepted: "
                        + ", ".join(CONFIG_KEYS))
    for key in ("set", "grid"):
        if not all(isinstance(v, dict) for v in (config.get(key) or {}).values()):
            raise GridError(f"{key!r} in --config {path} must map each method to "
                            "{key: value}")
    for method, lists in (config.get("grid") or {}).items():
        for key, values in lists.items():
            if not isinstance(values, list) or not values:
                raise GridError(f"grid {method}.{key} in --config {path} must be a non-empty "
                                f"list of values, got {values!r}")
    for method, entries in (config.get("tuned") or {}).items():
        if not isinstance(entries, dict) or not all(
                isinstance(entry, dict) and set(entry) <= set(TUNED_KEYS)
                for entry in entries.values()):
            raise GridError(f"tuned {method} in --config {path} must map each stream to "
                            f"{{{', '.join(TUNED_KEYS)}}}, got {entries!r}")
    return config


def expand(methods: list[str], stream_names: list[str], seeds: list[int], *,
           sets: Optional[dict] = None, grid: Optional[dict] = None,
           train: Optional[dict] = None, data_root: Optional[str] = None,
           plugins: tuple = (), tuned: Optional[dict] = None, suite: str = "") -> Grid:
    """Every cell of the grid, each spec once, hyperparameters checked and typed;
    ``plugins`` are the method files a cell loads (loaded here already).

    Raises MethodError (unknown method or key, wrong type) or StreamError (bad stream name).
    A key in ``sets`` is fixed: it is taken out of ``grid``. Streams are named canonically
    (:func:`benchmarks.streams.canonical`), so that one stream is one cell id however the
    user wrote its options. ``tuned`` maps a method and stream to the one configuration
    ``benchmarks.tune`` chose there (see the module docstring); ``suite`` names the suite
    the streams come from, recorded in every spec.
    """
    sets, grid = sets or {}, grid or {}
    for method in [*methods, *sets, *grid, *(tuned or {})]:
        get(method)
    stream_names = list(dict.fromkeys(streams.canonical(name) for name in stream_names))
    tuned = {(method, streams.canonical(stream)): entry
             for method, entries in (tuned or {}).items() for stream, entry in entries.items()}
    modes = {name: streams.parse(name)[0].label_mode for name in stream_names}
    variants = {method: _variants(method, sets.get(method, {}), grid.get(method, {}))
                for method in dict.fromkeys([*methods, *sets, *grid])}
    specs, skipped = {}, []
    for name in stream_names:
        for method in methods:
            try:
                check_label_mode(method, modes[name])
            except MethodError as exc:
                skipped.append(f"skipping {method} on {name}: {exc}")
                continue
            configs = [(hparams, dict(train or {}), "") for hparams in variants[method]]
            if (method, name) in tuned:
                configs = [_tuned(method, tuned[method, name], sets.get(method, {}), train)]
            for hparams, cell_train, tuning in configs:
                for seed in seeds:
                    spec = RunSpec(method, name, seed, hparams, cell_train, data_root,
                                   tuple(plugins), tuning, suite)
                    specs.setdefault(spec.id, spec)
    return Grid(list(specs.values()), skipped)


def _tuned(method: str, entry: dict, fixed: dict, train: Optional[dict]):
    """The hyperparameters, training config and tuning label of a tuned entry (``fixed``
    and a given learning rate win)."""
    overrides = {**entry.get("hparams", {}), **fixed}
    typed = resolve_hparams(method, overrides)
    cell_train = dict(train or {})
    if "lr" in entry and "lr" not in cell_train:
        cell_train["lr"] = float(entry["lr"])
    return {key: typed[key] for key in overrides}, cell_train, str(entry.get("tuning", "tuned"))


def _variants(method: str, fixed: dict, lists: dict) -> list[dict]:
    """One overrides dict per combination of ``lists``, with ``fixed`` in each, typed."""
    keys = [key for key in lists if key not in fixed]
    variants = []
    for combo in itertools.product(*(lists[key] for key in keys)):
        overrides = {**fixed, **dict(zip(keys, combo))}
        typed = resolve_hparams(method, overrides)
        variants.append({key: typed[key] for key in overrides})
    return variants
