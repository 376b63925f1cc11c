"""The method registry: a name -> a recipe that builds an Avalanche strategy.

A method file registers a build function::

    @register("mymethod", label_modes={"multi"}, paper="arXiv:...", defaults={"alpha": 1.0})
    def build(ctx):
        return ctx.template(plugins=[...])

Hyperparameters merge as defaults < config file < ``--set name.key=value``; unknown keys,
values of the wrong type, non-finite numbers, and values outside a key's declared ``choices``
or ``ranges``, and combinations that break a declared ``constraints`` entry are a
:class:`MethodError` naming what is accepted. Every numeric hyperparameter declares its
range; a rule between hyperparameters is a constraint::

    constraints=[(("embed_dim", "num_heads"), "embed_dim is null or a multiple of num_heads",
                  lambda embed_dim, num_heads: embed_dim is None or embed_dim % num_heads == 0)]
 ``space`` declares what ``benchmarks.tune`` searches
(the knobs the paper tunes), inside those ranges::

    space={"alpha": ("log", 0.1, 10.0),     # log-uniform
           "tau": ("float", 0.5, 0.9),      # uniform
           "clusters": ("int", 2, 8),       # integers, both ends included
           "kd": ("choice", ("dakd", "plain"))}

This module imports no torch: a method's declaration is checked before any training.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml


class MethodError(ValueError):
    """A method request a user can fix: unknown name, key, value or label mode."""


@dataclass
class Method:
    name: str
    build: Callable[[Any], Any]
    label_modes: frozenset
    defaults: dict = field(default_factory=dict)
    paper: str = ""
    choices: dict = field(default_factory=dict)
    source: str = ""  # the file that registered it
    ranges: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)
    constraints: tuple = ()  # (keys, rule in words, predicate over those keys' values)

    @property
    def external(self) -> bool:
        """Registered from outside the suite (a --plugin file or an entry point), so its file
        is not covered by the suite's code version."""
        return Path(self.source).resolve().parent != Path(__file__).resolve().parent

    @property
    def summary(self) -> str:
        """First line of the build function's (or its module's) docstring."""
        module = sys.modules.get(self.build.__module__)
        doc = (self.build.__doc__ or getattr(module, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


_METHODS: dict[str, Method] = {}


SPACE_KINDS = ("float", "log", "int", "choice")


def register(name: str, *, label_modes, defaults=None, paper: str = "", choices=None,
             ranges=None, space=None, constraints=()):
    """Decorator: register ``build(ctx) -> strategy`` as method ``name``; ``choices`` maps a
    hyperparameter to the values it accepts, ``ranges`` a numeric one to its ``(low,
    high)`` bounds (inclusive; None: unbounded), ``space`` a tuned one to its search range
    (see the module docstring), ``constraints`` rules between hyperparameters. A declaration
    that contradicts itself (its defaults breaking a rule included) is a MethodError."""
    modes = frozenset(label_modes)
    if not modes or not modes <= {"multi", "single"}:
        raise ValueError(f"method {name!r}: label_modes must be a subset of {{'multi', 'single'}}")
    defaults, choices = dict(defaults or {}), {k: tuple(v) for k, v in (choices or {}).items()}
    ranges, space = dict(ranges or {}), {k: _space_entry(name, k, v)
                                         for k, v in (space or {}).items()}
    _check_declaration(name, defaults, choices, ranges, space)
    constraints = tuple((tuple(keys), rule, test) for keys, rule, test in constraints)
    _check_constraints(name, defaults, constraints)

    def deco(fn):
        source = str(Path(getattr(sys.modules.get(fn.__module__), "__file__", None)
                          or fn.__code__.co_filename).resolve())
        if name in _METHODS and _METHODS[name].source != source:
            raise MethodError(f"method {name!r} is registered twice: by "
                              f"{_METHODS[name].source} and by {source}; rename one of them")
        _METHODS[name] = Method(name, fn, modes, defaults, paper, choices, source, ranges,
                                space, constraints)
        return fn

    return deco


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _space_entry(method: str, key: str, entry) -> tuple:
    """A space entry as ``(kind, low, high)`` or ``("choice", values)``, checked."""
    kind = entry[0] if isinstance(entry, (tuple, list)) and entry else None
    if kind == "choice" and len(entry) == 2 and len(entry[1]):
        return "choice", tuple(entry[1])
    if kind in SPACE_KINDS[:3] and len(entry) == 3 and all(map(_numeric, entry[1:])):
        low, high = entry[1:]
        if low > high:
            raise MethodError(f"space of {method}.{key}: low {low} > high {high}")
        if kind == "log" and low <= 0:
            raise MethodError(f"space of {method}.{key}: a log range must be above 0, got "
                              f"({low}, {high})")
        return kind, low, high
    raise MethodError(f"space of {method}.{key}: expected (float|log|int, low, high) or "
                      f"(choice, values), got {entry!r}")


def _check_declaration(name, defaults, choices, ranges, space) -> None:
    """Every numeric hyperparameter has a range holding its default; the space's keys are
    hyperparameters and its values lie within their ranges or choices."""
    for what, keys in (("choices", choices), ("ranges", ranges), ("space", space)):
        unknown = sorted(set(keys) - set(defaults))
        if unknown:
            raise MethodError(f"method {name!r}: {what} name(s) {', '.join(unknown)}, which "
                              "are not hyperparameters (keys of defaults)")
    missing = sorted(k for k, v in defaults.items()
                     if (_numeric(v) or v is None and k not in choices) and k not in ranges)
    if missing:
        raise MethodError(f"method {name!r}: numeric hyperparameter(s) {', '.join(missing)} "
                          "need a range, e.g. ranges={'alpha': (0.0, None)}")
    for key, value in defaults.items():
        _check_value(name, key, value, choices, ranges)
    for key, entry in space.items():
        values = entry[1] if entry[0] == "choice" else entry[1:]
        for value in values:
            _check_value(name, key, value, choices, ranges, f"space of {name}.{key}")


def _check_value(method, key, value, choices, ranges, what=None) -> None:
    """MethodError unless ``value`` is finite and inside ``key``'s choices and range."""
    what = what or f"{method}.{key}={value!r}"
    if key in choices and value not in choices[key]:
        raise MethodError(f"{what} is not accepted; accepted: "
                          + ", ".join(map(str, choices[key])))
    if not _numeric(value):
        if key in ranges and value is not None:
            raise MethodError(f"{what}: expected a number or null")
        return
    if not math.isfinite(value):
        raise MethodError(f"{what}: expected a finite number, got {value!r}")
    low, high = ranges.get(key, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        raise MethodError(f"{what} is out of range; accepted: {_range_text(low, high)}")


def _check_constraints(method: str, hparams: dict, constraints: tuple) -> None:
    """MethodError naming the values and the rule of the first constraint ``hparams``
    break."""
    for keys, rule, test in constraints:
        missing = sorted(set(keys) - set(hparams))
        if missing:
            raise MethodError(f"method {method!r}: constraint on {', '.join(missing)}, which "
                              "are not hyperparameters (keys of defaults)")
        if not test(*(hparams[k] for k in keys)):
            values = ", ".join(f"{method}.{k}={hparams[k]!r}" for k in keys)
            raise MethodError(f"{values} break the rule: {rule}")


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f"from {low} to {high}"
    return f">= {low}" if low is not None else f"<= {high}" if high is not None else "any"


def registered() -> dict[str, Method]:
    return dict(_METHODS)


def lookup(name: str) -> Method:
    if name not in _METHODS:
        raise MethodError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS)) or 'none'}")
    return _METHODS[name]


def _coerce(method: str, key: str, value, default):
    """``value`` (a CLI string or a parsed value) as the type of ``default``."""
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if isinstance(value, str) and (isinstance(default, float) or default is None):
        try:  # YAML reads 1e-3 as a string
            value = float(value)
        except ValueError:
            pass
    kind = type(default)
    if default is None or isinstance(value, kind) and not (
            isinstance(value, bool) and kind is not bool):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise MethodError(
        f"{method}.{key} expects {kind.__name__} (default {default!r}), got {value!r}")


def resolve_hparams(name: str, overrides: dict) -> dict:
    """The method's defaults with ``overrides`` applied and type-checked."""
    method = lookup(name)
    unknown = sorted(set(overrides) - set(method.defaults))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in method.defaults.items()) or "none"
        raise MethodError(f"unknown hyperparameter(s) {', '.join(unknown)} for method "
                          f"{name!r}; accepted: {accepted}")
    hparams = {k: _coerce(name, k, overrides.get(k, v), v) for k, v in method.defaults.items()}
    for key, value in hparams.items():
        _check_value(name, key, value, method.choices, method.ranges)
    _check_constraints(name, hparams, method.constraints)
    return hparams


def check_label_mode(name: str, label_mode: str) -> None:
    method = lookup(name)
    if label_mode not in method.label_modes:
        raise MethodError(f"method {name!r} supports {'/'.join(sorted(method.label_modes))}-label "
                          f"streams, not {label_mode}-label ones")
