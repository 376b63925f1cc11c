"""Shared helpers: a tiny embedded stream that trains in seconds."""
import pytest

from benchmarks.cell import run_cell
from benchmarks.runner.spec import RunSpec

TINY_STREAM = "digits:B0-C2?train=300&test=150"


@pytest.fixture
def cell():
    """Run one cell on a tiny stream: ``cell("finetune", epochs=1)`` -> record."""
    def run(method, stream=TINY_STREAM, seed=0, hparams=None, **train):
        record = run_cell(RunSpec(method, stream, seed, hparams or {}, {"epochs": 1, **train}))
        assert record["status"] == "done", record["traceback"]
        return record
    return run
