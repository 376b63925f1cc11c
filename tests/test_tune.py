"""benchmarks.tune: spaces, the validation split only, successive halving over seeds (its cell
budget, resuming after kill -9), the defaults as trial 0 and the two-standard-error rule, the
balanced objective, suites, tuned.yaml, bad input."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import fake_cell
import methods
from benchmarks import streams, tune
from benchmarks.metrics import session_metrics
from benchmarks.run import main as run
from benchmarks.runner.store import Store

ROOT = Path(__file__).resolve().parents[1]
TOY = str(Path(__file__).with_name("toy_methods.py"))
SPACE_FILE = '''
from methods import register


@register("spaced", label_modes={"multi", "single"},
          defaults={"w": 1.0, "t": 0.5, "k": 3, "mode": "a"},
          choices={"mode": ("a", "b", "c")},
          ranges={"w": (0.0, None), "t": (0.0, 1.0), "k": (1, 10)},
          space={"w": ("log", 0.01, 100.0), "t": ("float", 0.2, 0.4), "k": ("int", 2, 5),
                 "mode": ("choice", ("a", "c"))})
def build(ctx):
    raise NotImplementedError("runs only in the fake cell")
'''


@pytest.fixture(scope="module")
def spaced(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "spaced.py"
    path.write_text(SPACE_FILE)
    methods.load_plugin(str(path))
    return str(path)


def scored(score):
    """A fake cell whose headline is ``score(spec)``, in the stream's label mode (single-label:
    every seen class's accuracy is the score, so the balanced accuracy is too)."""
    def cell(spec, progress=False):
        record = fake_cell.run_cell(spec, progress)
        value, mode = score(spec), streams.parse(spec.stream)[0].label_mode
        record["stream"]["label_mode"] = mode
        for session in record["sessions"]:
            session["per_class"] = [value] * len(session["per_class"])
        record["summary"] = ({"avg_mAP": value} if mode == "multi" else {"avg_acc": value})
        return record
    return cell


def seed_noise(spec):
    """A value that depends on the seed only: every configuration ties."""
    return 50.0 + (spec.seed * 7919 % 13)


def test_a_space_samples_only_inside_its_bounds(spaced):
    import optuna

    space = tune.search_space("spaced", "digits:B0-C2", {}, lr_given=False)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        params = study.ask(space).params
        assert 0.01 <= params["w"] <= 100.0 and 0.2 <= params["t"] <= 0.4
        assert params["k"] in {2, 3, 4, 5} and params["mode"] in {"a", "c"}
        assert 2e-3 / 30 <= params["lr"] <= 2e-3 * 30  # digits' recipe lr 2e-3, / 30 to x 30
    assert space["w"].log and not space["t"].log
    fixed = tune.search_space("spaced", "digits:B0-C2", {"w": "2"}, lr_given=True)
    assert set(fixed) == {"t", "k", "mode"}


def test_a_value_near_a_bound_is_flagged():
    space = tune.search_space("finetune", "digits:B0-C2", {}, lr_given=False)
    # the lr range spans a factor 900; 5% of it on a log scale is a factor 900 ** 0.05 = 1.405
    assert tune.on_bound({"lr": 2e-3 * 30 / 1.40}, space) == ["lr"]
    assert tune.on_bound({"lr": 2e-3 / 30 * 1.40}, space) == ["lr"]
    assert tune.on_bound({"lr": 2e-3 * 30 / 1.42}, space) == []


def test_streams_are_tuned_on_their_validation_split_and_test_is_refused():
    assert tune.validation_stream("digits:B0-C2") == "digits:B0-C2?eval=valid&valid=0.1"
    assert tune.validation_stream("digits:B0-C2?valid=0.2") == \
        "digits:B0-C2?eval=valid&valid=0.2"
    assert tune.test_stream("digits:B0-C2?eval=valid&ratio=20&valid=0.1") == \
        "digits:B0-C2?ratio=20"
    with pytest.raises(Exception, match="tuning on the test split is refused"):
        tune.validation_stream("digits:B0-C2?valid=0.1&eval=test")


def test_successive_halving_rungs_and_their_cell_budget():
    assert tune.rungs(9) == [(9, 1), (3, 3), (1, 9)]
    assert tune.rungs(3) == [(3, 1), (1, 3)]
    assert tune.rungs(1) == [(1, 1)]
    # 9 candidates + defaults on 1 seed, 3 + defaults on 2 more, 1 + defaults on 6 more
    assert tune.planned_cells(9, 1) == 10 * 1 + 4 * 2 + 2 * 6 == 30
    assert tune.planned_cells(9, 2) == 60 and tune.planned_cells(3, 1) == 4 + 2 * 2


def _counting(calls, cell=fake_cell.run_cell):
    def counted(spec, progress=False):
        calls.append(spec)
        return cell(spec, progress)
    return counted


def test_every_method_spends_the_same_cells_and_the_defaults_run_every_seed(tmp_path, spaced):
    calls = []
    argv = ["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "9", "--out",
            str(tmp_path)]
    assert tune.main(argv, cell=_counting(calls)) == 0
    per_method = pd.Series([spec.method for spec in calls]).value_counts().to_dict()
    assert per_method == {"spaced": 30, "finetune": 30} == {
        m: tune.planned_cells(9, 1) for m in ("spaced", "finetune")}
    assert {spec.seed for spec in calls} == set(range(100, 109))  # never a test seed
    trials = pd.read_csv(tmp_path / "trials.csv")
    for method, rows in trials.groupby("method"):
        assert rows["trial"].tolist() == list(range(10))
        assert rows["defaults"].tolist() == [True] + [False] * 9
        assert rows["seeds"].value_counts().to_dict() == {1: 6, 3: 2, 9: 2}
        assert rows.loc[rows["defaults"], "seeds"].item() == 9
        assert sorted(rows["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 8
    defaults = [s for s in calls if s.method == "spaced" and not s.hparams]
    assert len(defaults) == 9 and all("lr" not in s.train for s in defaults)
    report = json.loads((tmp_path / "tuning.json").read_text())
    assert report["rungs"] == [[9, 1], [3, 3], [1, 9]]
    assert all(s["cells_reported"] == s["cells_planned"] == 30
               for s in report["studies"].values())


def test_halving_keeps_the_best_third_by_their_mean_over_the_rung_seeds(tmp_path, spaced):
    cell = scored(lambda spec: 10 * math.log10(spec.hparams["w"]) if "w" in spec.hparams
                  else -99.0)
    assert tune.main(["--methods", "spaced", "--plugin", spaced, "--budget", "9", "--out",
                      str(tmp_path)], cell=cell) == 0
    trials = pd.read_csv(tmp_path / "trials.csv").iloc[1:]  # without the defaults
    by_w = trials.sort_values("param_w", ascending=False)
    assert by_w["seeds"].tolist() == [9, 3, 3, 1, 1, 1, 1, 1, 1]


def test_a_candidate_replaces_the_defaults_only_beyond_two_standard_errors():
    # differences 1, 2, 3: mean 2, standard error 1 / sqrt(3), 2 SE = 1.155
    rule = tune.two_se_rule([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert rule["choice"] == "tuned" and rule["difference"] == pytest.approx(2.0)
    assert rule["two_se"] == pytest.approx(2 / math.sqrt(3))
    # differences 3, -1, 1: mean 1, standard deviation 2, 2 SE = 4 / sqrt(3) = 2.31 > 1
    rule = tune.two_se_rule([13.0, 9.0, 11.0], [10.0, 10.0, 10.0])
    assert rule["choice"] == "defaults" and rule["two_se"] == pytest.approx(4 / math.sqrt(3))
    assert tune.two_se_rule([15.0], [10.0])["choice"] == "defaults"  # one seed: no error bar


@pytest.mark.parametrize("better, choice", [(True, "tuned"), (False, "defaults")])
def test_tuned_yaml_says_whether_the_defaults_stand(tmp_path, spaced, better, choice):
    def score(spec):
        gain = 10 * math.log10(spec.hparams["w"]) if better and "w" in spec.hparams else 0.0
        return seed_noise(spec) + gain

    assert tune.main(["--methods", "spaced", "--plugin", spaced, "--budget", "3", "--out",
                      str(tmp_path)], cell=scored(score)) == 0
    text = (tmp_path / "tuned.yaml").read_text()
    entry = yaml.safe_load(text)["tuned"]["spaced"]["digits:B0-C2"]
    study = json.loads((tmp_path / "tuning.json").read_text())["studies"]["spaced@digits:B0-C2"]
    verdict = {"tuned": "tuned", "defaults": "defaults stand"}[choice]
    assert study["choice"] == choice and f"# spaced@digits:B0-C2: {verdict}: the best" in text
    if better:
        params = study["best"]["params"]
        assert entry["hparams"] == {k: v for k, v in params.items() if k != "lr"}
        assert entry["hparams"]["w"] > 1 and entry["lr"] == study["best"]["params"]["lr"]
    else:  # every configuration ties: a difference of 0 is not beyond 0 standard errors
        assert study["difference"] == 0 and entry == {"hparams": {}, "tuning": "valid halving 3"}


def _single_label_record(logits, targets):
    """A one-session single-label record whose metrics are computed from ``logits``."""
    metrics = session_metrics(logits, targets, 2, "single", [8, 2])
    return {"stream": {"label_mode": "single"}, "summary": {"avg_acc": metrics["acc"]},
            "sessions": [{"per_class": metrics["per_class"]}]}


def test_the_single_label_objective_is_balanced_accuracy_on_a_worked_example():
    """Validation: 8 images of class 0 (head), 2 of class 1 (tail). A predicts class 0 for
    all: accuracy 80%, balanced accuracy (100 + 0) / 2 = 50%. B gets 5 of 8 and 2 of 2:
    accuracy 70%, balanced (62.5 + 100) / 2 = 81.25%. Accuracy ranks A first; the objective,
    like the class-balanced test set, ranks B first."""
    targets = torch.tensor([0] * 8 + [1] * 2)
    a = _single_label_record(torch.tensor([[1.0, 0.0]] * 10), targets)
    b = _single_label_record(torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5), targets)
    assert (a["summary"]["avg_acc"], b["summary"]["avg_acc"]) == (80.0, 70.0)
    assert tune.objective(a) == 50.0 and tune.objective(b) == 81.25
    multi = {"stream": {"label_mode": "multi"}, "summary": {"avg_mAP": 61.5}}
    assert tune.objective(multi) == 61.5


def test_a_tuning_run_writes_trials_tuned_yaml_and_plots(tmp_path, spaced):
    calls = []
    argv = ["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "3", "--out",
            str(tmp_path)]
    assert tune.main(argv, cell=_counting(calls)) == 0
    assert {spec.stream for spec in calls} == {"digits:B0-C2?eval=valid&valid=0.1"}
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 8 and set(trials["state"]) == {"COMPLETE", "PRUNED"}
    assert {"param_w", "param_t", "param_k", "param_mode", "param_lr"} <= set(trials.columns)
    config = yaml.safe_load((tmp_path / "tuned.yaml").read_text())
    assert config["seeds"] == [0, 1, 2, 3, 4] and config["streams"] == ["digits:B0-C2"]
    assert (tmp_path / "plots" / "spaced_digits_B0_C2_seeds.png").exists()
    first = json.loads((tmp_path / "tuning.json").read_text())
    assert 0 < first["machinery_s"] and first["commands_wall_s"] == first["command_wall_s"]
    assert tune.main(argv, cell=_counting(calls)) == 0  # again: nothing to run, times add up
    again = json.loads((tmp_path / "tuning.json").read_text())
    assert again["commands_wall_s"] == pytest.approx(first["command_wall_s"]
                                                     + again["command_wall_s"])
    assert again["machinery_s"] > first["machinery_s"]


def test_each_study_draws_its_own_candidates(tmp_path, spaced):
    assert tune.main(["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "3",
                      "--out", str(tmp_path)], cell=fake_cell.run_cell) == 0
    trials = pd.read_csv(tmp_path / "trials.csv")
    lrs = trials.loc[~trials["defaults"]].groupby("method")["param_lr"].apply(set)
    assert not lrs["spaced"] & lrs["finetune"]


def test_tuned_yaml_round_trips_through_the_run_cli(tmp_path, spaced):
    def score(spec):
        return seed_noise(spec) + (10 * math.log10(spec.hparams["w"]) if "w" in spec.hparams
                                   else 0.0)

    assert tune.main(["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "3",
                      "--out", str(tmp_path / "tune")], cell=scored(score)) == 0
    tuned = yaml.safe_load((tmp_path / "tune" / "tuned.yaml").read_text())["tuned"]
    specs = []
    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--out",
                str(tmp_path / "test")], cell=_counting(specs)) == 0
    assert len(specs) == 10 and {s.stream for s in specs} == {"digits:B0-C2"}
    spaced_spec = next(s for s in specs if s.method == "spaced")
    assert spaced_spec.hparams == pytest.approx(tuned["spaced"]["digits:B0-C2"]["hparams"])
    assert spaced_spec.train["lr"] == pytest.approx(tuned["spaced"]["digits:B0-C2"]["lr"])
    board = pd.read_csv(tmp_path / "test" / "leaderboard.csv")
    assert set(board["tuning"]) == {"valid halving 3"} and set(board["n_seeds"]) == {5}
    # the verdicts travel with the configurations into the results folder and its report
    verdicts = json.loads((tmp_path / "tune" / "tuning.json").read_text())["studies"]
    kept = json.loads((tmp_path / "test" / "studies.json").read_text())
    assert {n: v["choice"] for n, v in kept.items()} == {n: v["choice"]
                                                          for n, v in verdicts.items()}
    summary = (tmp_path / "test" / "summary.md").read_text()
    assert "| spaced@digits:B0-C2 | tuned | +" in summary
    assert "| finetune@digits:B0-C2 | defaults stand | +0.00 (2 SE 0.00) | 3 |" in summary


def test_the_report_shows_each_study_verdict_and_a_parameter_on_a_bound(tmp_path):
    from benchmarks import studies

    studies.save(tmp_path, {"bsce@imbacil-v1:single": {
        "method": "bsce", "group": "single", "choice": "tuned", "difference": 2.345,
        "two_se": 1.5, "seeds": 9, "on_bound": ["lr"]}})
    studies.save(tmp_path, {"replay@imbacil-v1:single": {  # merged, the first one kept
        "method": "replay", "group": "single", "choice": "defaults", "difference": -0.5,
        "two_se": float("nan"), "seeds": 1, "on_bound": []}})
    lines = studies.section(tmp_path).splitlines()
    assert "| bsce@imbacil-v1:single | tuned | +2.35 (2 SE 1.50) | 9 | lr |" in lines
    assert "| replay@imbacil-v1:single | defaults stand | -0.50 (2 SE –) | 1 | – |" in lines
    assert studies.section(tmp_path / "none") == ""


def test_a_config_whose_studies_are_not_verdicts_is_refused(tmp_path, capsys):
    config = tmp_path / "tuned.yaml"
    config.write_text("methods: [finetune]\nstudies: [finetune]\n")
    assert run(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {config}: 'studies' must map study names to tuning verdicts, as "
                   "benchmarks.tune writes them in tuned.yaml")
    assert not (tmp_path / "out").exists()


KILLED = '''
import os, signal, sys
sys.path[:0] = [{tests!r}, {root!r}]
import fake_cell
from benchmarks import tune

log, kill_at = sys.argv[1], int(sys.argv[2])


def cell(spec, progress=False):
    done = open(log).read().split() if os.path.exists(log) else []
    if len(done) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    with open(log, "a") as f:
        f.write(spec.id + "\\n")
    return fake_cell.run_cell(spec, progress)


sys.exit(tune.main(sys.argv[3:], cell=cell))
'''


def test_a_study_killed_twice_with_sigkill_resumes_with_nothing_redone_nothing_added(
        tmp_path, spaced):
    script = tmp_path / "killed.py"
    script.write_text(KILLED.format(tests=str(Path(__file__).parent), root=str(ROOT)))
    log, out = tmp_path / "cells.log", tmp_path / "out"
    argv = ["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "3", "--out",
            str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # killed inside the first rung (8 cells), then inside the second (8 more), then resumed
    for kill_at, status in ((3, -9), (11, -9), (-1, 0)):
        done = subprocess.run([sys.executable, str(script), str(log), str(kill_at), *argv],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == status, done.stderr
        assert not status or len(log.read_text().split()) == kill_at
    ran = log.read_text().split()
    assert len(ran) == len(set(ran)) == 2 * tune.planned_cells(3, 1)  # nothing twice
    uninterrupted = tmp_path / "again"
    calls = []
    assert tune.main([*argv[:-2], str(uninterrupted)], cell=_counting(calls)) == 0
    assert set(ran) == {spec.id for spec in calls}
    resumed, again = (pd.read_csv(o / "trials.csv").drop(columns="wall_time_s")
                      for o in (out, uninterrupted))
    pd.testing.assert_frame_equal(resumed, again)  # the same trials, samples and choices
    assert len(Store(out).load_all()) == len(ran)


def test_the_test_split_is_never_evaluated_while_tuning(tmp_path, monkeypatch):
    from benchmarks.streams import base

    built = []
    real = base.make_benchmark

    def spy(train_sets, test_sets, joint_sets, valid_sets=None):
        built.append(test_sets is valid_sets and valid_sets is not None)
        return real(train_sets, test_sets, joint_sets, valid_sets)

    monkeypatch.setattr(base, "make_benchmark", spy)
    argv = ["--methods", "finetune", "--streams", "digits:B0-C2?train=300&test=150",
            "--budget", "1", "--epochs", "1", "--out", str(tmp_path), "--quiet"]
    assert tune.main(argv) == 0
    assert built and all(built)  # every stream built evaluates on its validation split


def test_a_suite_is_tuned_on_its_tuning_streams_and_tested_on_its_evaluation_streams(
        tmp_path, spaced, monkeypatch):
    from benchmarks import report, suites

    monkeypatch.setattr(streams, "check_sessions", lambda *args, **kwargs: None)  # no building
    monkeypatch.setattr(report, "plot", lambda *args, **kwargs: "")  # nor drawing

    suite, calls = suites.load("imbacil-v1"), []
    argv = ["--methods", "spaced,toy_single", "--plugin", spaced, "--plugin", TOY,
            "--suite", "imbacil-v1", "--budget", "1", "--out", str(tmp_path / "tune")]
    assert tune.main(argv, cell=_counting(calls, scored(seed_noise))) == 0
    tuning = {tune.validation_stream(s) for s in suite.tuning}
    assert {spec.stream for spec in calls} == tuning
    assert {spec.suite for spec in calls} == {"imbacil-v1"}
    report = json.loads((tmp_path / "tune" / "tuning.json").read_text())
    assert sorted(report["studies"]) == ["spaced@imbacil-v1:multi", "spaced@imbacil-v1:single",
                                         "toy_single@imbacil-v1:single"]
    assert len(calls) == 3 * tune.planned_cells(1, 2)  # two tuning streams per label mode
    config = yaml.safe_load((tmp_path / "tune" / "tuned.yaml").read_text())
    assert config["suite"] == "imbacil-v1" and "streams" not in config
    assert set(config["tuned"]["spaced"]) == set(suite.evaluation)
    assert set(config["tuned"]["toy_single"]) == set(suite.streams("evaluation", "single"))
    tested = []
    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--out",
                str(tmp_path / "test"), "--quiet"], cell=_counting(tested)) == 0
    assert {s.stream for s in tested} == set(suite.evaluation)
    assert len(tested) == 5 * (12 + 6) and {s.seed for s in tested} == set(range(5))
    board = pd.read_csv(tmp_path / "test" / "leaderboard.csv")
    assert set(board["suite"]) == {"imbacil-v1"}


def test_tuned_rows_are_paired_with_the_baseline_tuned_alike(tmp_path, spaced):
    assert tune.main(["--methods", "replay,spaced", "--plugin", spaced, "--budget", "2",
                      "--out", str(tmp_path / "tune")], cell=fake_cell.run_cell) == 0
    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--out",
                str(tmp_path / "test")], cell=fake_cell.run_cell) == 0
    pairs = pd.read_csv(tmp_path / "test" / "paired.csv")
    # each method has its own tuned configuration, yet spaced meets the tuned replay
    assert set(pairs["method"]) == {"spaced"} and set(pairs["n_pairs"]) == {5}
    assert set(pairs["paired_config"]) == {"tuned: valid halving 2"}
    # the same tuned configurations with another head meet the baseline with that head only
    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--head-init", "kaiming",
                "--out", str(tmp_path / "test")], cell=fake_cell.run_cell) == 0
    pairs = pd.read_csv(tmp_path / "test" / "paired.csv")
    assert set(pairs["n_pairs"]) == {5}
    assert set(pairs["paired_config"]) == {"tuned: valid halving 2",
                                           "tuned: valid halving 2, head_init=kaiming"}
    # a baseline tuned with hyperparameters of its own (not only a learning rate) pairs too
    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--out",
                str(tmp_path / "test"), "--baseline", "spaced"], cell=fake_cell.run_cell) == 0
    pairs = pd.read_csv(tmp_path / "test" / "paired.csv")
    assert set(pairs["method"]) == {"replay"} and set(pairs["n_pairs"]) == {5}
    assert set(pairs["baseline"]) == {"spaced"}
    assert "Δ avg mAP vs spaced" in (tmp_path / "test" / "leaderboard.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--budget", "0"], "--budget must be an integer >= 1, got 0"),
    (["--budget", "-2"], "--budget must be an integer >= 1"),
    (["--streams", "digits:B0-C2?valid=0.1&eval=test"], "tuning on the test split is refused"),
    (["--sampler", "grid"], "--sampler 'grid' is unknown; accepted: random, tpe"),
    (["--sampler-seed", "-1"], "argument --sampler-seed: expected an integer >= 0, got '-1'"),
    (["--rerun", "toy"], "--rerun is not a tuning option"),
    (["--methods", "nosuch"], "unknown method 'nosuch'"),
    (["--methods", "finetune", "--lr", "0.01"], "nothing to tune for finetune"),
    (["--methods", "lwf", "--set", "lwf.alpha=1", "--set", "lwf.temperature=2", "--lr", "0.01"],
     "nothing to tune for lwf"),
    (["--seeds", "3,100,101"], "none of the test seeds 0, 1, 2, 3, 4"),
    (["--budget", "3", "--seeds", "100,101"], "at least 3 tuning seeds"),
    (["--suite", "nosuch"], "unknown suite 'nosuch'; known: imbacil-v1"),
    (["--suite", "imbacil-v1", "--streams", "digits:B0-C2"], "--suite and --streams exclude"),
])
def test_bad_tuning_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    base = ["--methods", "toy", "--plugin", TOY, "--out", str(tmp_path / "out")]
    assert tune.main([*base, *argv], cell=fake_cell.run_cell) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out" / "study.journal").exists()


def test_tuning_into_a_run_folder_is_refused_and_leaves_it_alone(tmp_path, capsys):
    assert run(["--methods", "toy", "--plugin", TOY, "--seeds", "0", "--out", str(tmp_path),
                "--quiet"], cell=fake_cell.run_cell) == 0
    before = sorted(p.name for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert tune.main(["--methods", "finetune", "--out", str(tmp_path)],
                     cell=fake_cell.run_cell) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds the records of a benchmarks.run grid" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_resuming_with_other_tuning_options_is_refused(tmp_path, spaced, capsys):
    argv = ["--methods", "spaced", "--plugin", spaced, "--out", str(tmp_path)]
    assert tune.main([*argv, "--budget", "1"], cell=fake_cell.run_cell) == 0
    capsys.readouterr()
    assert tune.main([*argv, "--budget", "2"], cell=fake_cell.run_cell) == 2
    assert "resume it with the same options" in capsys.readouterr().err


def test_the_defaults_that_tune_help_states_are_the_ones_it_uses():
    import re

    helps = {a.option_strings[0]: a.help for a in tune.parser()._actions if a.option_strings}
    assert re.search(r"default (\d+)", helps["--budget"]).group(1) == str(tune.BUDGET)
    last = tune.rungs(tune.BUDGET)[-1]
    assert f"{last[0]} x {last[1]}" in " ".join(helps["--budget"].split())  # the last rung
    assert str(tune.TEST_SEEDS) in helps["--seeds"] and "default 100, 101" in helps["--seeds"]
    assert re.search(r"\(default (\w+)", helps["--sampler"]).group(1) == \
        tune.parser().get_default("sampler")
