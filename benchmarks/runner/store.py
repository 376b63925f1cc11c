"""The results store: one JSON record per cell under ``OUT/records/<id>.json``.

Records are written atomically (a temp file in the same folder, then ``os.replace``), so a
grid killed at any moment leaves only complete records; a leftover temp file is ignored.
Files are readable by all, as the CSVs beside them (the process umask applies). A record
that cannot be read (truncated, hand-edited) is set aside as ``<id>.json.corrupt`` and its
cell counts as not done; nothing is deleted.
"""
from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from .spec import RunSpec


def write_json(target: Path, data) -> Path:
    """Write ``data`` as JSON to ``target`` atomically (a temp file beside it, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def _umask() -> int:
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
                records[path.stem] = record
            except (ValueError, UnicodeDecodeError):
                aside = path.with_name(path.name + ".corrupt")
                for n in itertools.count(1):  # never overwrite an earlier one
                    if not aside.exists():
                        break
                    aside = path.with_name(f"{path.name}.corrupt{n}")
                os.replace(path, aside)
                self.set_aside.append(aside)
        return records

    def pending(self, specs: Iterable[RunSpec], rerun: Iterable[str] = ()) -> list[RunSpec]:
        """The specs to run: those without a done record, plus every cell of a method named
        in ``rerun``. A done record of other code is kept (the report flags it)."""
        rerun = set(rerun)
        records = self.load_all()
        return [spec for spec in specs
                if spec.method in rerun or records.get(spec.id, {}).get("status") != "done"]
