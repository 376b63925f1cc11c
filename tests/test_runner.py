"""The runner's parts: grid expansion, the records store, the executors, the code version."""
import json
import subprocess
from pathlib import Path

import pytest

import fake_cell
import methods
from benchmarks.runner import executors
from benchmarks.runner.grid import GridError, expand, load_config, parse_seeds, parse_sets
from benchmarks.runner.spec import RunSpec
from benchmarks.runner.store import Store
from benchmarks.runner.version import code_version, sources_hash

TOY = str(Path(__file__).with_name("toy_methods.py"))
STREAM = "digits:B0-C2"


@pytest.fixture(autouse=True, scope="module")
def toy_methods():
    methods.load_plugin(TOY)


# -- grid ---------------------------------------------------------------------------------

def test_ids_are_stable_and_differ_by_what_changes_the_numbers():
    first = expand(["toy"], [STREAM], [0, 1], sets={"toy": {"alpha": "2"}}).specs
    again = expand(["toy"], [STREAM], [0, 1], sets={"toy": {"alpha": 2.0}}).specs
    assert [s.id for s in first] == [s.id for s in again]  # "2" from the CLI is typed as 2.0
    assert len({s.id for s in first}) == 2
    assert first[0].hparams == {"alpha": 2.0}
    other_root = expand(["toy"], [STREAM], [0], sets={"toy": {"alpha": "2"}},
                        data_root="/elsewhere").specs[0]
    assert other_root.id == first[0].id


def test_hyperparameter_lists_expand_into_the_grid_and_sets_fix_a_key():
    grid = expand(["toy", "finetune"], [STREAM], [0, 1],
                  grid={"toy": {"alpha": [0.5, 1.5], "steps": [1, 2, 3]}},
                  sets={"toy": {"mode": "fail"}}, train={"epochs": 1})
    toy = [s for s in grid.specs if s.method == "toy"]
    assert len(toy) == 2 * 3 * 2 and len(grid.specs) == len(toy) + 2
    assert {(s.hparams["alpha"], s.hparams["steps"]) for s in toy} == {
        (a, n) for a in (0.5, 1.5) for n in (1, 2, 3)}
    assert all(s.hparams["mode"] == "fail" and s.train == {"epochs": 1} for s in toy)
    fixed = expand(["toy"], [STREAM], [0], grid={"toy": {"alpha": [0.5, 1.5]}},
                   sets={"toy": {"alpha": "3"}}).specs
    assert [s.hparams for s in fixed] == [{"alpha": 3.0}]


def test_duplicates_collapse_and_label_modes_are_skipped_with_a_line():
    grid = expand(["toy", "toy_single"], [STREAM, STREAM], [0, 0])
    assert [(s.method, s.seed) for s in grid.specs] == [("toy", 0)]
    assert grid.skipped == [f"skipping toy_single on {STREAM}: method 'toy_single' supports "
                            "single-label streams, not multi-label ones"]


@pytest.mark.parametrize("kwargs, message", [
    ({"sets": {"toy": {"gamma": "1"}}}, "unknown hyperparameter(s) gamma for method 'toy'; "
                                        "accepted: alpha=1.0, steps=2, mode='ok'"),
    ({"sets": {"toy": {"steps": "many"}}}, "toy.steps expects int"),
    ({"grid": {"toy": {"alpha": ["x"]}}}, "toy.alpha expects float"),
    ({"sets": {"nosuch": {"a": "1"}}}, "unknown method 'nosuch'"),
])
def test_bad_overrides_name_what_is_accepted(kwargs, message):
    with pytest.raises(methods.MethodError) as err:
        expand(["toy"], [STREAM], [0], **kwargs)
    assert message in str(err.value)


def test_seeds_sets_and_config_files_are_parsed_or_rejected(tmp_path):
    assert parse_seeds("0, 1,2") == [0, 1, 2] and parse_seeds([3]) == [3]
    with pytest.raises(GridError, match="seeds must be integers.*'x'"):
        parse_seeds("0,x")
    assert parse_sets(["a.k=1", "a.k=2", "b.j=x=y"]) == {"a": {"k": "2"}, "b": {"j": "x=y"}}
    with pytest.raises(GridError, match="METHOD.KEY=VALUE"):
        parse_sets(["alpha=1"])
    good = tmp_path / "grid.yaml"
    good.write_text("methods: [toy]\ngrid: {toy: {alpha: [1, 2]}}\n")
    assert load_config(good) == {"methods": ["toy"], "grid": {"toy": {"alpha": [1, 2]}}}
    for text, message in [("epoch: 2", r"unknown key\(s\) epoch .*accepted: methods"),
                          ("grid: {toy: {alpha: 1}}", "must be a non-empty list"),
                          ("[1, 2]", "must be a mapping"), ("a: [", "not valid YAML")]:
        good.write_text(text)
        with pytest.raises(GridError, match=message):
            load_config(good)


# -- store --------------------------------------------------------------------------------

def _record(spec, status="done", version="v1"):
    return {"id": spec.id, "spec": spec.to_dict(), "status": status, "code_version": version}


def test_store_writes_atomically_and_ignores_leftover_temp_files(tmp_path):
    store = Store(tmp_path)
    spec = RunSpec("toy", STREAM, 0)
    path = store.write(_record(spec, "failed"))
    store.write(_record(spec))
    assert path == tmp_path / "records" / f"{spec.id}.json"
    assert json.loads(path.read_text())["status"] == "done"
    assert [p.name for p in store.records.iterdir()] == [path.name]  # no temp file left
    with pytest.raises(TypeError):  # a write that breaks midway leaves the old record whole
        store.write({**_record(spec, "failed"), "env": object()})
    assert json.loads(path.read_text())["status"] == "done"
    assert [p.name for p in store.records.iterdir()] == [path.name]
    # a write killed before its rename leaves a temp file: not a record
    (store.records / f".{RunSpec('toy', STREAM, 1).id}.x.tmp").write_text('{"id": "half')
    assert list(store.load_all()) == [spec.id]


def test_pending_skips_done_retries_failed_and_reruns_named_methods(tmp_path):
    store = Store(tmp_path)
    done, failed, old, new = (RunSpec(m, STREAM, s) for m, s in
                              [("toy", 0), ("toy", 1), ("finetune", 0), ("finetune", 1)])
    store.write(_record(done))
    store.write(_record(failed, "failed"))
    store.write(_record(old, version="v0"))  # done with other code: kept, flagged by the report
    specs = [done, failed, old, new]
    assert store.pending(specs) == [failed, new]
    assert store.pending(specs, rerun=["finetune"]) == [failed, old, new]


# -- executors ----------------------------------------------------------------------------

def test_local_pool_returns_every_record_and_divides_threads(tmp_path):
    specs = [RunSpec("toy", STREAM, s, {"mode": m}) for s, m in
             [(0, "ok"), (1, "fail"), (2, "raise"), (3, "ok")]]
    records = list(executors.run_local(specs, workers=2, cell=fake_cell.run_cell))
    by_id = {r["id"]: r for r in records}
    assert set(by_id) == {s.id for s in specs}
    assert [by_id[s.id]["status"] for s in specs] == ["done", "failed", "failed", "done"]
    assert by_id[specs[2].id]["error"] == "RuntimeError: the fake cell raised"
    assert "Traceback" in by_id[specs[2].id]["traceback"]
    assert by_id[specs[0].id]["env"] == {"threads": executors.threads_per_cell(2),
                                         "progress": False}


def test_a_dead_worker_fails_the_cells_left_without_hanging():
    specs = [RunSpec("toy", STREAM, s, {"mode": "die" if s == 1 else "ok"}) for s in range(5)]
    records = list(executors.run_local(specs, workers=2, cell=fake_cell.run_cell))
    assert sorted(r["id"] for r in records) == sorted(s.id for s in specs)
    failed = [r for r in records if r["status"] == "failed"]
    assert specs[1].id in {r["id"] for r in failed}
    assert all(r["error"].startswith("BrokenProcessPool") for r in failed)


def test_one_worker_runs_in_process_with_progress():
    spec = RunSpec("toy", STREAM, 0, {"mode": "raise"})
    ok = RunSpec("toy", STREAM, 1)
    records = list(executors.run_local([spec, ok], cell=fake_cell.run_cell, progress=True))
    assert [r["status"] for r in records] == ["failed", "done"]
    assert records[1]["env"] == {"threads": executors.threads_per_cell(1), "progress": True}


# -- code version -------------------------------------------------------------------------

def _git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


def test_code_version_is_the_commit_plus_a_dirty_hash_else_a_source_hash(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    source = tmp_path / "benchmarks" / "a.py"
    source.write_text("x = 1\n")
    assert code_version(tmp_path) == f"src:{sources_hash(tmp_path)}"
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    clean = code_version(tmp_path)
    assert clean.startswith("git:") and "dirty" not in clean
    (tmp_path / "notes.txt").write_text("not code")
    assert code_version(tmp_path) == clean
    source.write_text("x = 2\n")
    dirty = code_version(tmp_path)
    assert dirty == f"{clean}+dirty:{sources_hash(tmp_path)}"
    source.write_text("x = 3\n")
    assert code_version(tmp_path) not in (clean, dirty)
    # a copy inside some other repository is not that repository's commit
    inner = tmp_path / "vendored"
    (inner / "methods").mkdir(parents=True)
    (inner / "methods" / "m.py").write_text("")
    assert code_version(inner).startswith("src:")


# -- canonical stream names -----------------------------------------------------------------

@pytest.mark.parametrize("written, canonical", [
    ("digits:B0-C2?train=300&test=150", "digits:B0-C2?test=150&train=300"),
    ("digits:B0-C2?test=150&train=300", "digits:B0-C2?test=150&train=300"),
    ("digits:B0-C2?ratio=10", "digits:B0-C2"),
    ("digits:B0-C2?ratio=10.0&eval=test&valid=0", "digits:B0-C2"),
    ("digits:B0-C2?ratio=20.0", "digits:B0-C2?ratio=20"),
    ("digits:B0-C2?valid=0.10&eval=valid", "digits:B0-C2?eval=valid&valid=0.1"),
])
def test_a_stream_has_one_canonical_name(written, canonical):
    from benchmarks import streams

    assert streams.canonical(written) == canonical
    assert expand(["toy"], [written], [0]).specs[0].stream == canonical


def test_a_record_under_an_old_stream_name_is_migrated_to_its_canonical_cell(tmp_path):
    old = RunSpec("toy", "digits:B0-C2?train=300&ratio=10.0&test=150", 0)
    record = fake_cell.run_cell(old)
    store = Store(tmp_path)
    store.write(record)
    new = expand(["toy"], [old.stream], [0]).specs[0]
    assert new.id != old.id
    records = store.load_all()
    assert list(records) == [new.id]
    assert records[new.id]["spec"]["stream"] == "digits:B0-C2?test=150&train=300"
    assert records[new.id]["renamed_from"] == {"id": old.id, "stream": old.stream}
    assert (tmp_path / "records" / f"{old.id}.json.renamed").exists()  # nothing is lost
    assert store.pending([new]) == []
