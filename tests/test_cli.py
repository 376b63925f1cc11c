"""``python -m benchmarks.run`` end to end: the real cell on a tiny stream (resume, a killed
grid, failures, Ray), the fake cell where only the driver is under test, and bad input."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import fake_cell
from benchmarks.run import main
from benchmarks.runner.store import Store

ROOT = Path(__file__).resolve().parents[1]
TOY = str(Path(__file__).with_name("toy_methods.py"))
TINY = "digits:B0-C2?train=300&test=150"
GRID = ["--methods", "finetune,replay", "--streams", TINY, "--seeds", "0,1", "--epochs", "1"]


def forbidden(spec, progress=False):
    raise AssertionError(f"cell {spec.id} should not run")


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes and modification time."""
    return {p.relative_to(folder): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def metrics(out: Path) -> pd.DataFrame:
    """The leaderboard without timings."""
    board = pd.read_csv(out / "leaderboard.csv")
    return board.drop(columns=[c for c in board.columns if c.startswith("wall_time")])


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """An uninterrupted two-method, two-seed grid with the real cell, in this process."""
    out = tmp_path_factory.mktemp("grid")
    assert main([*GRID, "--out", str(out)]) == 0
    return out


def test_a_grid_writes_records_leaderboard_and_plots(grid_run):
    records = Store(grid_run).load_all().values()
    assert sorted((r["spec"]["method"], r["spec"]["seed"], r["status"]) for r in records) == [
        ("finetune", 0, "done"), ("finetune", 1, "done"), ("replay", 0, "done"),
        ("replay", 1, "done")]
    assert all(r["code_version"] and len(r["sessions"]) == 5 for r in records)
    board = pd.read_csv(grid_run / "leaderboard.csv")
    assert sorted(board["method"]) == ["finetune", "replay"]
    assert (board["n_seeds"] == 2).all() and board["avg_mAP_mean"].is_monotonic_decreasing
    assert board["avg_mAP_std"].notna().all() and not board["stale"].any()
    assert len(pd.read_csv(grid_run / "per_seed.csv")) == 4
    assert "| replay | epochs=1 | 2 |" in (grid_run / "leaderboard.md").read_text()
    assert sorted(p.name.rsplit("_", 1)[1] for p in (grid_run / "plots").iterdir()) == [
        "class.png", "groups.png", "improvement.png", "iqm.png", "last.png", "sessions.png"]


def test_a_second_run_does_no_work(grid_run, capsys):
    records = snapshot(grid_run / "records")
    assert main([*GRID, "--out", str(grid_run)], cell=forbidden) == 0
    assert "4 cells: 4 done already, 0 to run" in capsys.readouterr().err
    assert snapshot(grid_run / "records") == records


def test_a_killed_grid_resumes_to_the_same_leaderboard(grid_run, tmp_path):
    out = tmp_path / "killed"
    run = subprocess.Popen([sys.executable, "-m", "benchmarks.run", *GRID, "--out", str(out),
                            "--quiet"], cwd=ROOT, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.glob("records/*.json")) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    before = snapshot(out / "records")
    assert 1 <= len([p for p in before if p.suffix == ".json"]) < 4, "not killed mid-grid"
    assert main([*GRID, "--out", str(out), "--quiet"]) == 0
    after = snapshot(out / "records")
    assert all(after[p] == before[p] for p in before if p.suffix == ".json")  # none run twice
    assert len([p for p in after if p.suffix == ".json"]) == 4
    pd.testing.assert_frame_equal(metrics(out), metrics(grid_run))


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path, capsys):
    argv = ["--methods", "finetune,explode", "--plugin", TOY, "--streams", TINY, "--seeds", "0",
            "--epochs", "1", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / name) for name in
                           ("leaderboard.csv", "leaderboard.md", "paired.csv", "per_seed.csv",
                            "per_class.csv", "summary.md", "plots", "baseline.txt",
                            "leaderboard.tex", "report.html")]
    assert err.splitlines()[0].startswith(f"1 of 2 cells failed (tracebacks in {tmp_path}")
    assert "explode on digits" in err and "RuntimeError: explode cannot be built" in err
    status = {r["spec"]["method"]: r["status"] for r in Store(tmp_path).load_all().values()}
    assert status == {"finetune": "done", "explode": "failed"}
    assert pd.read_csv(tmp_path / "leaderboard.csv")["method"].tolist() == ["finetune"]
    assert main([*argv[:-1]]) == 1  # the failed cell is retried, the done one is not
    assert "2 cells: 1 done already, 1 to run" in capsys.readouterr().err


def test_ray_gives_the_same_records_as_local(grid_run, tmp_path):
    assert main([*GRID, "--executor", "ray", "--out", str(tmp_path), "--quiet"]) == 0
    local, ray = Store(grid_run).load_all(), Store(tmp_path).load_all()
    assert set(ray) == set(local)
    for cell_id, record in ray.items():
        assert record["env"]["threads"] == local[cell_id]["env"]["threads"]
        assert record["summary"] == local[cell_id]["summary"]
        assert [(s["metrics"], s["per_class"]) for s in record["sessions"]] == [
            (s["metrics"], s["per_class"]) for s in local[cell_id]["sessions"]]


def test_stale_records_are_flagged_until_rerun(tmp_path):
    argv = ["--methods", "toy", "--plugin", TOY, "--seeds", "0,1", "--out", str(tmp_path),
            "--quiet"]
    assert main([*argv, "--tensorboard"], cell=fake_cell.run_cell) == 0
    store = Store(tmp_path)
    records = list(store.load_all().values())
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == sorted(
        r["id"] for r in records)
    store.write({**records[0], "code_version": "git:0123456789ab"})  # from older code
    assert main(argv, cell=forbidden) == 0
    row = pd.read_csv(tmp_path / "leaderboard.csv").iloc[0]
    assert len(row["code_versions"].split("; ")) == 2 and row["stale"]
    assert "git:0123456789ab" in row["code_versions"]
    assert "| toy † |" in (tmp_path / "leaderboard.md").read_text()
    assert main([*argv, "--rerun", "toy"], cell=fake_cell.run_cell) == 0
    row = pd.read_csv(tmp_path / "leaderboard.csv").iloc[0]
    assert "; " not in row["code_versions"] and not row["stale"]


def test_a_config_file_expands_hyperparameter_lists_under_the_flags(tmp_path, monkeypatch,
                                                                   capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(f"methods: [toy]\nplugins: [{TOY}]\nseeds: [0]\nepochs: 2\n"
                      "amp: bf16\nchannels_last: true\nreset_optimizer: false\noptimizer: sgd\n"
                      "set: {toy: {steps: 3}}\ngrid: {toy: {alpha: [0.5, 1.5]}}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(config), "--seeds", "1,2", "--quiet"],
                cell=fake_cell.run_cell) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.split()[0] == str(Path("results/sweep/leaderboard.csv"))
    specs = [r["spec"] for r in Store(tmp_path / "results" / "sweep").load_all().values()]
    assert sorted((s["hparams"]["alpha"], s["seed"]) for s in specs) == [
        (0.5, 1), (0.5, 2), (1.5, 1), (1.5, 2)]
    assert all(s["hparams"]["steps"] == 3 for s in specs)
    assert all(s["train"] == {"epochs": 2, "amp": "bf16", "channels_last": True,
                              "reset_optimizer": False, "optimizer": "sgd"} for s in specs)


def test_list_shows_methods_with_defaults_and_streams_with_protocols(capsys):
    assert main(["--list", "--plugin", TOY]) == 0
    out = capsys.readouterr().out
    assert "  toy  [multi/single-label]" in out and "defaults: alpha=1.0, steps=2, mode='ok'" in out
    assert "  digits  [multi-label]" in out and "protocols: B0-C2, B4-C2" in out


def test_threads_sets_each_cells_torch_threads_and_not_its_id(tmp_path):
    argv = ["--methods", "toy", "--plugin", TOY, "--seeds", "0", "--quiet"]
    threads = torch.get_num_threads()
    try:
        assert main([*argv, "--out", str(tmp_path / "a")], cell=fake_cell.run_cell) == 0
        assert main([*argv, "--out", str(tmp_path / "b"), "--threads", "1"],
                    cell=fake_cell.run_cell) == 0
    finally:
        torch.set_num_threads(threads)
    (a,), (b,) = (Store(tmp_path / name).load_all().values() for name in "ab")
    assert a["id"] == b["id"] and a["spec"] == b["spec"]
    assert a["env"]["threads"] == os.cpu_count() and b["env"]["threads"] == 1


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A results folder from an earlier grid."""
    out = tmp_path_factory.mktemp("existing")
    assert main(["--methods", "toy", "--plugin", TOY, "--seeds", "0", "--out", str(out),
                 "--quiet"], cell=fake_cell.run_cell) == 0
    return out


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nosuch"], "unknown method 'nosuch'; known: "),
    (["--streams", "nosuch:B0-C2"], "unknown dataset 'nosuch' in stream 'nosuch:B0-C2'; known: "),
    (["--streams", "digits:X3"], "bad stream name 'digits:X3': expected dataset:B<base>-C<inc>"),
    (["--streams", "digits:B3"], "protocol B3 is one session with all classes: need B10"),
    (["--streams", "digits:B0-C3"], "protocol B0-C3 does not divide 10 classes"),
    (["--streams", "digits:B0-C2?size=3"], "unknown option 'size' for dataset 'digits'"),
    (["--seeds", "0,one"], "seeds must be integers, e.g. --seeds 0,1,2; got 'one'"),
    (["--set", "nosuch.alpha=1"], "unknown method 'nosuch'"),
    (["--set", "toy.gamma=1"], "unknown hyperparameter(s) gamma for method 'toy'; accepted: "
                               "alpha=1.0, steps=2, mode='ok'"),
    (["--set", "toy.steps=many"], "toy.steps expects int (default 2), got 'many'"),
    (["--set", "toy.alpha"], "--set expects METHOD.KEY=VALUE"),
    (["--streams", "coco:B40-C10"], "coco data not found (no data root given): expected "),
    (["--streams", "voc:B0-C4", "--data-root", "/nonexistent"], "voc data not found"),
    (["--out", __file__ + "/sub"], "is not writable"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (["--threads", "0"], "argument --threads: expected an integer >= 1, got '0'"),
    (["--amp", "fp8"], "argument --amp: invalid choice: 'fp8'"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["--reset-optimizer", "no"], "argument --reset-optimizer: expected true or false, got 'no'"),
    (["--executor", "dask"], "argument --executor: invalid choice: 'dask'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--methods", "toy_single"], "nothing to run: skipping toy_single on digits:B0-C2: "),
    (["--rerun", "replay"], "--rerun names replay, not in --methods; accepted: toy"),
    (["--plugin", "nope.py"], "plugin 'nope.py' is not a Python file"),
    (["--config", "nope.yaml"], "cannot read --config nope.yaml"),
    (["--pretrained", "nope.pt"], "--pretrained nope.pt: no such file"),
    (["--backbone", "vgg"], "argument --backbone: invalid choice: 'vgg'"),
    (["--backbone", "timm:nope"], "argument --backbone: unknown timm model 'nope'"),
    (["--streams", "digits:B0-C2?ratio=0"],
     "option ratio=0 for 'digits' is out of range; accepted: float from 1 to 1000"),
    (["--streams", "digits:B0-C2?ratio=-5"], "option ratio=-5 for 'digits' is out of range"),
    (["--streams", "digits:B0-C2?train=0"], "option train=0 for 'digits' is out of range"),
    (["--streams", "digits:B0-C2?train=-5"], "option train=-5 for 'digits' is out of range"),
    (["--streams", "digits-lt:B0-C2?n_max=0"], "option n_max=0 for 'digits-lt' is out of range"),
    (["--streams", "synthetic:B0-C5?size=3"], "option size=3 for 'synthetic' is out of range"),
    (["--streams", "digits:B0-C2?data_seed=-1"], "option data_seed=-1 for 'digits' is out"),
    (["--streams", "digits:B0-C2?train=100000000"], "needs about 644 GiB for its images alone"),
    (["--image-size", "20000"], "digits:B0-C2 at image size 20000 and batch size 64 needs about"),
    (["--streams", "digits:B0-C2?train=50&ratio=1000&data_seed=2"],
     "session 0 of digits:B0-C2?data_seed=2&ratio=1000&train=50 has no train image"),
    (["--streams", "digits:B0-C2?eval=valid"], "option eval=valid in 'digits:B0-C2?eval=valid' "
                                               "needs a validation split"),
    (["--seeds", "-1"], "seed -1 is out of range; accepted: integers from 0 to 4294967295"),
    (["--seeds", "99999999999"], "seed 99999999999 is out of range"),
    (["--seeds", ""], "no seeds given"),
    (["--seeds", "0,,1"], "seeds must be comma-separated integers without empty items"),
    (["--lr", "nan"], "argument --lr: expected a finite number > 0.0, got 'nan'"),
    (["--lr", "inf"], "argument --lr: expected a finite number > 0.0, got 'inf'"),
    (["--lr", "0"], "argument --lr: expected a finite number > 0.0, got '0'"),
    (["--set", "toy.alpha=.nan"], "toy.alpha=nan: expected a finite number"),
    (["--methods", "rebll", "--set", "rebll.tau=5"],
     "rebll.tau=5.0 is out of range; accepted: from 0.0 to 1.0"),
    (["--methods", "lwf", "--set", "lwf.alpha=-1"], "lwf.alpha=-1.0 is out of range"),
    (["--streams", "digits:B0-C2?ratio=nan"], "option ratio='nan' for 'digits' must be a finite"),
    (["--streams", "digits:B0-C2?ratio=10&ratio=20"], "bad stream option 'ratio' given twice"),
    (["--out", "/proc/imbacil"], "--out /proc/imbacil is not writable"),
    (["--methods", "krt", "--set", "krt.embed_dim=7"],
     "krt.embed_dim=7, krt.num_heads=8 break the rule: embed_dim is null or a multiple of"),
    (["--set", "wa.temperature=2"], "--set names wa, not in --methods, so it would be ignored"),
    (["--pretrained", __file__], "are not a checkpoint torch can read"),
    (["--baseline", "toy(alpha"], "--baseline 'toy(alpha' is not METHOD, METHOD(key=value"),
    (["--baseline", "replay(negatives=seen)"], "replay is not in --methods; accepted: toy"),
])
def test_bad_input_exits_2_with_one_line_and_leaves_results_alone(existing, argv, message,
                                                                   capsys):
    before = snapshot(existing)
    base = ["--methods", "toy", "--plugin", TOY, "--out", str(existing)]
    assert main([*base, *argv], cell=forbidden) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert snapshot(existing) == before


def test_bad_input_creates_no_results_folder(tmp_path, capsys):
    assert main(["--methods", "toy", "--plugin", TOY, "--seeds", "x",
                 "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()
    (tmp_path / "locked").mkdir(mode=0o500)
    if os.access(tmp_path / "locked", os.W_OK):  # root writes anyway: a file stands in
        (tmp_path / "locked").rmdir()
        (tmp_path / "locked").write_text("a file")
    assert main(["--methods", "toy", "--plugin", TOY,
                 "--out", str(tmp_path / "locked" / "a" / "b")]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert not (tmp_path / "locked" / "a").exists()


def test_a_corrupt_record_is_named_set_aside_and_its_cell_runs_again(existing, tmp_path,
                                                                     capsys):
    out = tmp_path / "out"
    argv = ["--methods", "toy", "--plugin", TOY, "--seeds", "0,1", "--out", str(out)]
    assert main(argv, cell=fake_cell.run_cell) == 0
    first, second = sorted((out / "records").glob("*.json"))
    first.write_text(first.read_text()[:50])  # truncated
    second.write_text('{"hand": "edited"}')
    capsys.readouterr()
    assert main(argv, cell=fake_cell.run_cell) == 0
    err = capsys.readouterr().err
    assert f"warning: {first} could not be read; set aside as {first.name}.corrupt" in err
    assert "2 cells: 0 done already, 2 to run" in err
    assert first.with_name(first.name + ".corrupt").read_text().startswith('{')
    assert len(Store(out).load_all()) == 2


def test_records_are_readable_by_all_like_the_csvs(existing):
    for path in [*existing.glob("records/*.json"), existing / "leaderboard.csv"]:
        assert path.stat().st_mode & 0o044 == 0o044, path


PLUGIN = '''
from methods import register


@register("{name}", label_modes={{"multi"}}, defaults={{"weight": {weight}}},
          ranges={{"weight": (0.0, None)}})
def build(ctx):
    """A plugin method."""
    raise NotImplementedError
'''


def test_an_edited_plugin_file_makes_its_done_cells_stale(tmp_path, capsys):
    plugin = tmp_path / "edited.py"
    plugin.write_text(PLUGIN.format(name="edited", weight=1.0))
    argv = ["--methods", "edited", "--plugin", str(plugin), "--seeds", "0,1",
            "--out", str(tmp_path / "out")]
    assert main(argv, cell=fake_cell.run_cell) == 0
    row = pd.read_csv(tmp_path / "out" / "leaderboard.csv").iloc[0]
    assert not row["stale"]
    plugin.write_text(PLUGIN.format(name="edited", weight=50.0))  # the user edits the loss
    capsys.readouterr()
    assert main(argv, cell=forbidden) == 0
    err = capsys.readouterr().err
    assert "2 done already" in err and "done cells of edited come from other code" in err
    assert pd.read_csv(tmp_path / "out" / "leaderboard.csv").iloc[0]["stale"]
    assert main([*argv, "--rerun", "edited"], cell=fake_cell.run_cell) == 0
    assert not pd.read_csv(tmp_path / "out" / "leaderboard.csv").iloc[0]["stale"]
    records = Store(tmp_path / "out").load_all().values()
    assert {r["method_source"] for r in records} == {str(plugin.resolve())}


def test_a_plugin_may_not_take_a_registered_name(tmp_path, capsys):
    plugin = tmp_path / "impostor.py"
    plugin.write_text(PLUGIN.format(name="replay", weight=1.0))
    assert main(["--methods", "replay", "--plugin", str(plugin), "--list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "method 'replay' is registered twice: by " in err
    assert "methods/replay.py" in err and str(plugin.resolve()) in err


def test_cells_of_different_thread_counts_are_never_averaged_together(tmp_path):
    argv = ["--methods", "toy", "--plugin", TOY, "--quiet", "--out", str(tmp_path)]
    threads = torch.get_num_threads()
    try:
        assert main([*argv, "--seeds", "0", "--threads", "1"], cell=fake_cell.run_cell) == 0
        assert main([*argv, "--seeds", "0,1", "--threads", "2"], cell=fake_cell.run_cell) == 0
    finally:
        torch.set_num_threads(threads)
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert sorted(zip(board["threads"], board["n_seeds"])) == [(1, 1), (2, 1)]
    assert "| threads |" in (tmp_path / "leaderboard.md").read_text()


def test_help_answers_before_torch_is_imported_and_explains_streams_resume_and_exits():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "benchmarks.run", "--help"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "torch" not in imported and "avalanche" not in imported
    for words in ("dataset:B<base>-C<inc>", "resuming:", "exit status:", "130 interrupted"):
        assert words in done.stdout


def test_progress_written_to_a_file_is_plain_lines(tmp_path, capsys):
    assert main(["--methods", "toy", "--plugin", TOY, "--seeds", "0,1", "--out", str(tmp_path)],
                cell=fake_cell.run_cell) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert "cells: 1/2 cells (toy digits:B0-C2 seed 0: done)" in err
    assert "cells: 2/2 cells (toy digits:B0-C2 seed 1: done)" in err


def test_ctrl_c_keeps_finished_cells_and_writes_their_leaderboard(tmp_path, capsys):
    def interrupted(spec, progress=False):
        if spec.seed == 1:
            raise KeyboardInterrupt
        return fake_cell.run_cell(spec, progress)

    argv = ["--methods", "toy", "--plugin", TOY, "--seeds", "0,1", "--out", str(tmp_path)]
    assert main(argv, cell=interrupted) == 130
    assert "interrupted: finished cells are saved" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "leaderboard.csv")["n_seeds"].tolist() == [1]


@pytest.mark.parametrize("argv", [
    ["--methods", "nosuch"], ["--methods", "replay", "--streams", "nosuch:B0-C2"],
    ["--methods", "replay", "--backbone", "nope"], ["--config", "nope.yaml"],
    ["--methods", "rebll", "--set", "rebll.tau=5"], ["--methods", "replay", "--lr", "nan"],
    ["--methods", "replay", "--streams", "coco:B40-C10"], ["--list"],
    ["--methods", "krt", "--set", "krt.embed_dim=7"],
    ["--methods", "replay", "--set", "wa.temperature=2"],
])
def test_user_errors_and_list_answer_without_importing_torch(argv, tmp_path):
    """Every user error (and --list) is answered before torch is imported."""
    script = ("import sys; from benchmarks.run import main; code = main(sys.argv[1:]); "
              "print('torch' in sys.modules, 'avalanche' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, *argv, "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == (0 if argv == ["--list"] else 2), done.stderr
    assert done.stdout.splitlines()[-1] == "False False"


def test_one_stream_written_three_ways_is_one_cell(tmp_path, capsys):
    """Permuted options, an explicit default and a float spelled as an int are one cell."""
    argv = ["--methods", "toy", "--plugin", TOY, "--seeds", "0", "--out", str(tmp_path)]
    assert main([*argv, "--streams", "digits:B0-C2?train=300&test=150&ratio=10"],
                cell=fake_cell.run_cell) == 0
    again = "digits:B0-C2?test=150&ratio=10.0&train=300,digits:B0-C2?train=300&test=150"
    assert main([*argv, "--streams", again], cell=forbidden) == 0
    assert "1 cells: 1 done already, 0 to run" in capsys.readouterr().err
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert board["stream"].tolist() == ["digits:B0-C2?test=150&train=300"]


def test_the_headline_command_without_replay_pairs_to_its_first_method(tmp_path, capsys):
    argv = ["--methods", "toy,finetune", "--plugin", TOY, "--seeds", "0,1", "--out",
            str(tmp_path)]
    assert main(argv, cell=fake_cell.run_cell) == 0
    assert "paired differences are to toy, the first of --methods" in capsys.readouterr().err
    pairs = pd.read_csv(tmp_path / "paired.csv")
    assert set(pairs["method"]) == {"finetune"} and set(pairs["baseline"]) == {"toy"}
    assert "Δ avg mAP vs toy" in (tmp_path / "leaderboard.md").read_text()


def test_a_command_whose_cells_all_fail_leaves_the_folders_leaderboard_whole(tmp_path):
    base = ["--plugin", TOY, "--seeds", "0,1", "--out", str(tmp_path), "--quiet"]
    assert main(["--methods", "toy,finetune", *base], cell=fake_cell.run_cell) == 0
    board, md = pd.read_csv(tmp_path / "leaderboard.csv"), (tmp_path / "leaderboard.md")
    before = md.read_text()
    assert main(["--methods", "explode", *base, "--streams", TINY, "--epochs", "1"]) == 1
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "leaderboard.csv"), board)
    assert md.read_text() == before and "| toy |" in before
    assert set(pd.read_csv(tmp_path / "per_seed.csv")["status"]) == {"done", "failed"}


def test_run_and_report_pair_to_the_same_recorded_baseline(tmp_path, capsys):
    from benchmarks.report import main as report

    argv = ["--methods", "toy,finetune", "--plugin", TOY, "--seeds", "0,1", "--out",
            str(tmp_path), "--quiet"]
    assert main(argv, cell=fake_cell.run_cell) == 0
    assert (tmp_path / "baseline.txt").read_text() == "toy\n"  # the first of --methods
    assert report([str(tmp_path)]) == 0  # alphabetically first would be finetune
    assert set(pd.read_csv(tmp_path / "paired.csv")["baseline"]) == {"toy"}
    assert main(["--methods", "finetune,toy", *argv[2:]], cell=forbidden) == 0
    assert set(pd.read_csv(tmp_path / "paired.csv")["baseline"]) == {"toy"}


def test_run_and_report_both_render_every_record_of_the_folder(tmp_path, capsys):
    from benchmarks.report import main as report

    base = ["--plugin", TOY, "--seeds", "0", "--out", str(tmp_path)]
    assert main(["--methods", "finetune", *base], cell=fake_cell.run_cell) == 0
    assert main(["--methods", "toy", *base], cell=fake_cell.run_cell) == 0
    assert "the report shows every record of" in capsys.readouterr().err
    assert sorted(pd.read_csv(tmp_path / "leaderboard.csv")["method"]) == ["finetune", "toy"]
    before = (tmp_path / "leaderboard.md").read_text()
    assert report([str(tmp_path)]) == 0
    assert (tmp_path / "leaderboard.md").read_text() == before


def test_sigterm_ends_a_grid_like_ctrl_c(tmp_path):
    """A grid killed with SIGTERM keeps its finished cells and writes their leaderboard."""
    script = ("import sys, time, fake_cell; sys.path.insert(0, '.'); "
              "from benchmarks.run import main\n"
              "def slow(spec, progress=False):\n"
              "    if spec.seed == 1:\n"
              "        print('second cell', flush=True); time.sleep(60)\n"
              "    return fake_cell.run_cell(spec, progress)\n"
              "sys.exit(main(sys.argv[1:], cell=slow))")
    argv = ["--methods", "toy", "--plugin", TOY, "--seeds", "0,1", "--out", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}/tests:{ROOT}"})
    assert proc.stdout.readline().strip() == "second cell"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished cells are saved" in err
    assert pd.read_csv(tmp_path / "leaderboard.csv")["n_seeds"].tolist() == [1]


def _help_default(make_parser, flag: str) -> str:
    """The "(default X)" that ``flag``'s help text states."""
    import re

    action = next(a for a in make_parser()._actions if flag in a.option_strings)
    return re.search(r"\(default ([^);]+)", action.help).group(1)


def test_the_defaults_that_help_states_are_the_ones_a_grid_gets(tmp_path):
    from benchmarks.run import make_plan, parse, parser

    args, config = parse(["--methods", "finetune", "--out", str(tmp_path)])
    plan = make_plan(args, config)
    assert _help_default(parser, "--seeds") == ",".join(
        map(str, sorted({spec.seed for spec in plan.specs})))
    assert _help_default(parser, "--streams") == plan.specs[0].stream
    assert _help_default(parser, "--workers") == str(plan.workers)


def test_the_files_readme_lists_are_the_files_a_run_writes(tmp_path):
    import re

    readme = (ROOT / "README.md").read_text()
    block = readme.split("results/default/\n", 1)[1].split("```", 1)[0]
    listed = {re.split(r"[/ ]", line.strip())[0] for line in block.splitlines()
              if re.match(r"  \S", line)}
    assert main(["--methods", "toy,finetune", "--plugin", TOY, "--seeds", "0,1", "--out",
                 str(tmp_path), "--quiet"], cell=fake_cell.run_cell) == 0
    assert listed == {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
