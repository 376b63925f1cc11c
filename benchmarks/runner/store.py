"""The results store: one JSON record per cell under ``OUT/records/<id>.json``.

Records are written atomically (a temp file in the same folder, then ``os.replace``), so a
grid killed at any moment leaves only complete records; a leftover temp file is ignored.
Files are readable by all, as the CSVs beside them (the process umask applies). A record
that cannot be read (truncated, hand-edited) is set aside as ``<id>.json.corrupt`` and its
cell counts as not done; nothing is deleted.

A record written under a stream name that is not canonical (options in another order, a
default written out, ``10.0`` for ``10``: the names of the suite before canonical names) is
migrated when the folder is read: it is written again under its canonical name and cell id,
with ``renamed_from`` saying what it was, and the old file is kept as ``<id>.json.renamed``.
"""
from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from benchmarks import streams

from .spec import RunSpec


def write_text(target: Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically (a temp file beside it, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def write_json(target: Path, data) -> Path:
    """Write ``data`` as JSON to ``target`` atomically."""
    return write_text(target, json.dumps(data, indent=1))


def umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Store:
    """The records of one results folder; ``set_aside`` lists the unreadable record files
    moved aside by :meth:`load_all`."""

    def __init__(self, out):
        self.records = Path(out) / "records"
        self.set_aside: list[Path] = []

    def path(self, cell_id: str) -> Path:
        return self.records / f"{cell_id}.json"

    def write(self, record: dict) -> Path:
        """Write ``record`` as ``records/<id>.json``, replacing any older one atomically."""
        return write_json(self.path(record["id"]), record)

    def load_all(self) -> dict[str, dict]:
        """Every record in the folder by id (temp files are not records)."""
        if not self.records.is_dir():
            return {}
        records = {}
        for path in sorted(self.records.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or record.get("id") != path.stem:
                    raise ValueError("not a record of this cell")
                record = self._canonical(path, record)
                records[record["id"]] = records.get(record["id"], record)
            except (ValueError, UnicodeDecodeError):
                aside = path.with_name(path.name + ".corrupt")
                for n in itertools.count(1):  # never overwrite an earlier one
                    if not aside.exists():
                        break
                    aside = path.with_name(f"{path.name}.corrupt{n}")
                os.replace(path, aside)
                self.set_aside.append(aside)
        return records

    def _canonical(self, path: Path, record: dict) -> dict:
        """``record`` under its stream's canonical name, migrated on disk if it was not."""
        spec = record.get("spec") or {}
        try:
            name = streams.canonical(spec["stream"])
        except (KeyError, TypeError, streams.StreamError):
            return record
        if name == spec["stream"]:
            return record
        spec = {**spec, "stream": name}
        renamed = {**record, "id": RunSpec.from_dict(spec).id, "spec": spec,
                   "renamed_from": {"id": record["id"], "stream": record["spec"]["stream"]}}
        if isinstance(renamed.get("stream"), dict):
            renamed["stream"] = {**renamed["stream"], "name": name}
        target = self.path(renamed["id"])
        if target.exists():  # the canonical cell has its own record: it wins
            renamed = json.loads(target.read_text())
        else:
            write_json(target, renamed)
        os.replace(path, path.with_name(path.name + ".renamed"))
        return renamed

    def pending(self, specs: Iterable[RunSpec], rerun: Iterable[str] = ()) -> list[RunSpec]:
        """The specs to run: those without a done record, plus every cell of a method named
        in ``rerun``. A done record of other code is kept (the report flags it)."""
        rerun = set(rerun)
        records = self.load_all()
        return [spec for spec in specs
                if spec.method in rerun or records.get(spec.id, {}).get("status") != "done"]
