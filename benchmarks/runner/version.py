"""Code versions, stamped on every record so that results of other code are flagged.

A cell's version is the suite's (:func:`code_version`) plus, for a method registered from
outside the suite (a ``--plugin`` file or an entry point), a hash of that method's file
(:func:`cell_version`): editing a plugin file makes its earlier results stale."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
# What decides a cell's numbers; tests, docs and results folders do not.
PACKAGES = ("benchmarks", "methods", "strategies")


def code_version(root: Path = ROOT) -> str:
    """``git:<commit>`` for a checkout whose packages match the commit,
    ``git:<commit>+dirty:<sources hash>`` when they differ, ``src:<sources hash>`` outside git
    (an installed copy). The hash makes two different dirty trees two different versions."""
    head = _git(root, "rev-parse", "--show-toplevel", "HEAD")
    if head is None or Path(head.split("\n")[0]).resolve() != root.resolve():
        return f"src:{sources_hash(root)}"
    commit = head.split("\n")[1][:12]
    dirty = _git(root, "status", "--porcelain", "--", *PACKAGES)
    if dirty is None:
        return f"src:{sources_hash(root)}"
    return f"git:{commit}" + (f"+dirty:{sources_hash(root)}" if dirty else "")


def cell_version(suite: str, method_source: Optional[str]) -> str:
    """The version of a cell run with suite version ``suite`` and a method defined in
    ``method_source`` (None for the suite's own methods)."""
    if not method_source:
        return suite
    try:
        digest = hashlib.sha1(Path(method_source).read_bytes()).hexdigest()[:12]
    except OSError:
        digest = "missing"
    return f"{suite}+plugin:{digest}"


def sources_hash(root: Path = ROOT) -> str:
    """A short hash of every Python file of the packages (paths and contents)."""
    digest = hashlib.sha1()
    for package in PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _git(root: Path, *args: str) -> Optional[str]:
    """Output of ``git -C root args`` or None when git or the repository is unavailable."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
