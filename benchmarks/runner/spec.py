"""RunSpec: one cell of a grid (a method on a stream with one seed and its overrides)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Optional

# Training-config keys that do not change the numbers a cell produces, so not its identity.
_NOT_IDENTITY = ("num_workers",)


@dataclass(frozen=True)
class RunSpec:
    """What one cell runs. ``hparams`` override the method's defaults; ``train`` overrides
    the stream's recipe (epochs, batch_size, lr, memory, device, ...); ``data_root`` says
    where real data lives and ``tuning`` how the hyperparameters were chosen (empty: the
    method's defaults and the user's overrides; e.g. ``valid budget 16``): neither is part of
    the cell's identity."""

    method: str
    stream: str
    seed: int
    hparams: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data_root: Optional[str] = None
    plugins: tuple = ()
    tuning: str = ""

    @property
    def id(self) -> str:
        """Stable id: a hash of everything that determines the cell's numbers."""
        key = {
            "method": self.method,
            "stream": self.stream,
            "seed": self.seed,
            "hparams": self.hparams,
            "train": {k: v for k, v in self.train.items() if k not in _NOT_IDENTITY},
        }
        blob = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(**{**d, "plugins": tuple(d.get("plugins", ()))})


def new_record(spec: RunSpec) -> dict:
    """A cell's record before it has run: status ``failed`` until the cell says otherwise."""
    return {"id": spec.id, "spec": spec.to_dict(), "status": "failed", "error": None,
            "traceback": None, "env": None, "stream": None, "hparams": None, "train": None,
            "pretrained": None, "sessions": [], "summary": None, "wall_time_s": None}
