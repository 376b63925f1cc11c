"""The results store: one JSON record per cell under ``OUT/records/<id>.json``.

Records are written atomically (a temp file in the same folder, then ``os.replace``), so a
grid killed at any moment leaves only complete records; a leftover temp file is ignored.
"""
from __future__ import annotations

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
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


class Store:
    """The records of one results folder."""

    def __init__(self, out):
        self.records = Path(out) / "records"

    def path(self, cell_id: str) -> Path:
        return self.records / f"{cell_id}.json"

    def write(self, record: dict) -> Path:
        """Write ``record`` as ``records/<id>.json``, replacing any older one atomically."""
        return write_json(self.path(record["id"]), record)

    def load_all(self) -> dict[str, dict]:
        """Every record in the folder by id (temp files are not records)."""
        if not self.records.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.records.glob("*.json"))}

    def pending(self, specs: Iterable[RunSpec], rerun: Iterable[str] = ()) -> list[RunSpec]:
        """The specs to run: those without a done record, plus every cell of a method named
        in ``rerun``. A done record of other code is kept (the report flags it)."""
        rerun = set(rerun)
        records = self.load_all()
        return [spec for spec in specs
                if spec.method in rerun or records.get(spec.id, {}).get("status") != "done"]
