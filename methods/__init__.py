"""Methods: one file per named recipe, found on import.

Three ways a method is found: a module in this package whose name does not start with an
underscore (imported by :func:`discover`), an
installed package's entry point in the group ``imbacil.methods`` (its module registers on
load), or a file passed to :func:`load_plugin` (``--plugin path/to/file.py``).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from pathlib import Path

from ._registry import (Method, MethodError, check_label_mode, lookup, register,
                       registered)
from ._registry import resolve_hparams as _resolve_hparams

ENTRY_POINT_GROUP = "imbacil.methods"


def discover() -> dict[str, Method]:
    """Import every method module here and every entry point; return the registry.

    Modules already imported are not run again, so calling it twice is cheap."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
    return registered()


def load_plugin(path: str) -> None:
    """Import a method file by path so that its ``@register`` runs."""
    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        raise MethodError(f"plugin {path!r} is not a Python file")
    name = f"imbacil_plugin_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken plugin is the user's to fix: say which and why
        del sys.modules[name]
        raise MethodError(f"plugin {path!r} failed to load: {exc}") from exc


def get(name: str) -> Method:
    """The registered method ``name`` (discovering methods first)."""
    discover()
    return lookup(name)


def resolve_hparams(name: str, overrides: dict) -> dict:
    """Method ``name``'s defaults with ``overrides`` applied and type-checked (discovering
    methods first)."""
    discover()
    return _resolve_hparams(name, overrides)


def __getattr__(attr):  # MethodContext imports torch and Avalanche: only when first asked for
    if attr == "MethodContext":
        from ._context import MethodContext
        return MethodContext
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["ENTRY_POINT_GROUP", "Method", "MethodContext", "MethodError", "check_label_mode", "discover",
           "get", "load_plugin", "register", "resolve_hparams"]
