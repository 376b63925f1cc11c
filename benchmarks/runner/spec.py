"""RunSpec: one cell of a grid (a method on a stream with one seed and its overrides)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from benchmarks.backbones import HEAD_INITS

# Training-config keys that do not change the numbers a cell produces, so not its identity.
_NOT_IDENTITY = ("num_workers",)
# Training options added after cells were recorded, with the value every older cell ran with:
# that value is dropped from a spec, so that giving it keeps the cell (and its id) it was.
_BEFORE_OPTION = {"head_init": HEAD_INITS[0]}


@dataclass(frozen=True)
class RunSpec:
    """What one cell runs. ``hparams`` override the method's defaults; ``train`` overrides
    the stream's recipe (epochs, batch_size, lr, memory, device, ...); ``data_root`` says
    where real data lives, ``tuning`` how the hyperparameters were chosen (empty: the
    method's defaults and the user's overrides; e.g. ``valid budget 16``) and ``suite`` the
    stream suite the cell was run for (e.g. ``imbacil-v1``; empty: none): none of them is
    part of the cell's identity. A ``train`` option at the value cells had before the option
    existed (``head_init: linear``) is dropped."""

    method: str
    stream: str
    seed: int
    hparams: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data_root: Optional[str] = None
    plugins: tuple = ()
    tuning: str = ""
    suite: str = ""

    def __post_init__(self):
        object.__setattr__(self, "train", {k: v for k, v in self.train.items()
                                           if k not in _BEFORE_OPTION or _BEFORE_OPTION[k] != v})

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
