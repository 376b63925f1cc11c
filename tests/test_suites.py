"""Stream suites: imbacil-v1's streams, versioning, tuning and evaluation disjoint, --suite in
the run CLI (expansion, records and leaderboard naming the suite), bad names."""
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import fake_cell
from benchmarks import streams, suites
from benchmarks.run import main as run
from benchmarks.runner.store import Store

ROOT = Path(__file__).resolve().parents[1]
# imbacil-v1 as published: a test that fails when the file is edited (make a v2 instead)
IMBACIL_V1 = {
    "evaluation": [
        "digits:B0-C2?data_seed=1", "digits:B0-C2?data_seed=2&ratio=50",
        "digits:B0-C2?data_seed=3&ratio=100", "digits:B4-C2?data_seed=1&ratio=50",
        "digits:B0-C1?data_seed=2&train=1500", "digits:B0-C1?data_seed=3&ratio=100&train=1500",
        "digits-lt:B0-C2?data_seed=1", "digits-lt:B0-C2?data_seed=2&ratio=50",
        "digits-lt:B0-C2?data_seed=3&ratio=100", "digits-lt:B4-C2?data_seed=1&ratio=100",
        "digits-lt:B0-C1?data_seed=2&ratio=50", "digits-lt:B0-C1?data_seed=3"],
    "tuning": [
        "digits:B0-C2?data_seed=101&ratio=50&valid=0.2",
        "digits:B0-C1?data_seed=102&train=1500&valid=0.2",
        "digits-lt:B0-C2?data_seed=101&ratio=50&valid=0.2",
        "digits-lt:B0-C1?data_seed=102&valid=0.2"]}


def test_imbacil_v1_is_frozen():
    suite = suites.load("imbacil-v1")
    assert (suite.name, suite.version, suite.label) == ("imbacil", 1, "imbacil-v1")
    assert list(suite.evaluation) == IMBACIL_V1["evaluation"]
    assert list(suite.tuning) == IMBACIL_V1["tuning"]


def test_imbacil_v1_spans_ratios_protocols_and_class_orders_in_each_label_mode():
    suite = suites.load("imbacil-v1")
    assert len(suite.evaluation) >= 12 and suite.label_modes() == ["multi", "single"]
    for mode in suite.label_modes():
        parsed = [streams.parse(name)[1] for name in suite.streams("evaluation", mode)]
        assert len(parsed) >= 5
        assert {p.options["ratio"] for p in parsed} >= {10, 50, 100}
        sessions = {p.protocol: len(streams.session_splits(10, p.base, p.inc)) for p in parsed}
        assert len(sessions) >= 2 and max(sessions.values()) >= 10
        assert len({p.options["data_seed"] for p in parsed}) >= 3
        assert suite.streams("tuning", mode)


def test_tuning_streams_are_no_evaluation_stream_and_share_no_class_order():
    suite = suites.load("imbacil-v1")
    tuning = [streams.parse(n)[1] for n in suite.tuning]
    evaluation = [streams.parse(n)[1] for n in suite.evaluation]
    assert not {(p.dataset, p.options["data_seed"]) for p in tuning} & {
        (p.dataset, p.options["data_seed"]) for p in evaluation}
    assert all(p.options["valid"] > 0 for p in tuning)
    assert not set(suite.tuning) & set(suite.evaluation)


def _write(folder: Path, label: str, text: str) -> None:
    (folder / f"{label}.yaml").write_text(text)


SMALL = """name: mini
version: {version}
description: two streams
evaluation:
  - digits:B0-C2?data_seed=1
tuning:
  - digits:B0-C2?data_seed={tuning_seed}&valid=0.2
"""


def test_a_new_version_is_a_new_file_and_a_file_must_say_its_own_version(tmp_path):
    _write(tmp_path, "mini-v1", SMALL.format(version=1, tuning_seed=9))
    _write(tmp_path, "mini-v2", SMALL.format(version=2, tuning_seed=8))
    assert suites.available(tmp_path) == ["mini-v1", "mini-v2"]
    assert suites.load("mini-v2", tmp_path).tuning == ("digits:B0-C2?data_seed=8&valid=0.2",)
    _write(tmp_path, "mini-v3", SMALL.format(version=2, tuning_seed=8))
    with pytest.raises(suites.SuiteError, match="declares name 'mini' version 2; its file "
                                                "name says 'mini' version 3"):
        suites.load("mini-v3", tmp_path)


def test_a_suite_that_tunes_on_an_evaluation_class_order_is_refused(tmp_path):
    _write(tmp_path, "mini-v1", SMALL.format(version=1, tuning_seed=1))
    with pytest.raises(suites.SuiteError, match="share their dataset and data_seed"):
        suites.load("mini-v1", tmp_path)


def test_suite_files_ship_as_package_data():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "*.yaml" in config["options.package_data"]["benchmarks.suites"]
    assert "benchmarks.*" in config["options.packages.find"]["include"].split()
    assert (ROOT / "benchmarks" / "suites" / "__init__.py").exists()


def test_run_suite_expands_to_its_evaluation_streams_and_names_it_everywhere(
        tmp_path, monkeypatch):
    from benchmarks import report

    monkeypatch.setattr(streams, "check_sessions", lambda *args, **kwargs: None)  # no building
    monkeypatch.setattr(report, "plot", lambda *args, **kwargs: "")  # nor drawing
    specs = []

    def cell(spec, progress=False):
        specs.append(spec)
        return fake_cell.run_cell(spec, progress)

    config = tmp_path / "grid.yaml"
    config.write_text("methods: [finetune]\nsuite: imbacil-v1\nseeds: [0]\n")
    assert run(["--config", str(config), "--out", str(tmp_path), "--quiet"], cell=cell) == 0
    assert [s.stream for s in specs] == IMBACIL_V1["evaluation"]
    assert all(r["spec"]["suite"] == "imbacil-v1" for r in Store(tmp_path).load_all().values())
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert len(board) == 12 and set(board["suite"]) == {"imbacil-v1"}
    assert "## digits:B0-C1?data_seed=2&train=1500 (multi-label; suite imbacil-v1)" in \
        (tmp_path / "leaderboard.md").read_text()
    # the same cells under --suite on the command line: nothing to run again
    assert run(["--methods", "finetune", "--suite", "imbacil-v1", "--seeds", "0", "--out",
                str(tmp_path), "--quiet"], cell=cell) == 0
    assert len(specs) == 12


@pytest.mark.parametrize("argv, message", [
    (["--suite", "imbacil-v9"], "error: unknown suite 'imbacil-v9'; known: imbacil-v1"),
    (["--suite", "imbacil-v1", "--streams", "digits:B0-C2"],
     "error: --suite and --streams exclude each other"),
])
def test_a_bad_suite_is_one_error_line_and_exit_2(argv, message, tmp_path, capsys):
    assert run(["--methods", "finetune", *argv, "--out", str(tmp_path / "out")],
               cell=fake_cell.run_cell) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message)
    assert not (tmp_path / "out").exists()


def test_list_shows_the_suites_and_their_streams(capsys):
    assert run(["--list"]) == 0
    out = capsys.readouterr().out
    assert "  imbacil-v1  12 embedded evaluation streams" in out
    assert "      tuning: digits:B0-C2?data_seed=101&ratio=50&valid=0.2," in out


def test_an_installed_copy_finds_its_suites(tmp_path):
    """The suites are found next to the module, wherever the package is copied."""
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-c", "from benchmarks import suites; "
                           "print(suites.available(), suites.FOLDER)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "['imbacil-v1']" in done.stdout and str(tmp_path) in done.stdout
