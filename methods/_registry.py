"""The method registry: a name -> a recipe that builds an Avalanche strategy.

A method file registers a build function::

    @register("mymethod", label_modes={"multi"}, paper="arXiv:...", defaults={"alpha": 1.0})
    def build(ctx):
        return ctx.template(plugins=[...])

Hyperparameters merge as defaults < config file < ``--set name.key=value``; unknown keys,
values of the wrong type and values outside a key's declared ``choices`` are a
:class:`MethodError` naming what is accepted.
"""
from __future__ import annotations

import sys
from pathlib import Path
from dataclasses import dataclass, field
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


def register(name: str, *, label_modes, defaults=None, paper: str = "", choices=None):
    """Decorator: register ``build(ctx) -> strategy`` as method ``name``; ``choices`` maps a
    hyperparameter to the values it accepts."""
    modes = frozenset(label_modes)
    if not modes or not modes <= {"multi", "single"}:
        raise ValueError(f"method {name!r}: label_modes must be a subset of {{'multi', 'single'}}")

    def deco(fn):
        source = str(Path(getattr(sys.modules.get(fn.__module__), "__file__", None)
                          or fn.__code__.co_filename).resolve())
        if name in _METHODS and _METHODS[name].source != source:
            raise MethodError(f"method {name!r} is registered twice: by "
                              f"{_METHODS[name].source} and by {source}; rename one of them")
        _METHODS[name] = Method(name, fn, modes, dict(defaults or {}), paper,
                                {k: tuple(v) for k, v in (choices or {}).items()}, source)
        return fn

    return deco


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
    for key, accepted in method.choices.items():
        if hparams[key] not in accepted:
            raise MethodError(f"{name}.{key}={hparams[key]!r} is not accepted; accepted: "
                              + ", ".join(map(str, accepted)))
    return hparams


def check_label_mode(name: str, label_mode: str) -> None:
    method = lookup(name)
    if label_mode not in method.label_modes:
        raise MethodError(f"method {name!r} supports {'/'.join(sorted(method.label_modes))}-label "
                          f"streams, not {label_mode}-label ones")
