"""benchmarks.tune: spaces, the validation split only, resuming, tuned.yaml, bad input."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

import fake_cell
import methods
from benchmarks import tune
from benchmarks.run import main as run

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


def test_a_space_samples_only_inside_its_bounds(spaced):
    import optuna

    space = tune.search_space("spaced", "digits:B0-C2", {}, lr_given=False)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        params = study.ask(space).params
        assert 0.01 <= params["w"] <= 100.0 and 0.2 <= params["t"] <= 0.4
        assert params["k"] in {2, 3, 4, 5} and params["mode"] in {"a", "c"}
        assert 2e-4 <= params["lr"] <= 2e-2  # digits' recipe lr 2e-3, / 10 to x 10
    assert space["w"].log and not space["t"].log
    fixed = tune.search_space("spaced", "digits:B0-C2", {"w": "2"}, lr_given=True)
    assert set(fixed) == {"t", "k", "mode"}


def test_streams_are_tuned_on_their_validation_split_and_test_is_refused():
    assert tune.validation_stream("digits:B0-C2") == "digits:B0-C2?eval=valid&valid=0.1"
    assert tune.validation_stream("digits:B0-C2?valid=0.2") == \
        "digits:B0-C2?eval=valid&valid=0.2"
    assert tune.test_stream("digits:B0-C2?eval=valid&ratio=20&valid=0.1") == \
        "digits:B0-C2?ratio=20"
    with pytest.raises(Exception, match="tuning on the test split is refused"):
        tune.validation_stream("digits:B0-C2?valid=0.1&eval=test")


def _counting(calls):
    def cell(spec, progress=False):
        calls.append(spec)
        return fake_cell.run_cell(spec, progress)
    return cell


def test_a_tuning_run_writes_trials_tuned_yaml_and_plots(tmp_path, spaced, capsys):
    calls = []
    argv = ["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "3", "--out",
            str(tmp_path)]
    assert tune.main(argv, cell=_counting(calls)) == 0
    assert {spec.stream for spec in calls} == {"digits:B0-C2?eval=valid&valid=0.1"}
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    assert trials.groupby("method").size().to_dict() == {"finetune": 3, "spaced": 3}
    assert {"param_w", "param_t", "param_k", "param_mode", "param_lr"} <= set(trials.columns)
    config = yaml.safe_load((tmp_path / "tuned.yaml").read_text())
    entry = config["tuned"]["spaced"]["digits:B0-C2"]
    best = trials[trials["method"] == "spaced"].sort_values("objective").iloc[-1]
    assert entry["hparams"]["w"] == pytest.approx(best["param_w"])
    assert entry["lr"] == pytest.approx(best["param_lr"]) and entry["tuning"] == \
        "valid budget 3"
    assert config["seeds"] == [0, 1, 2, 3, 4]
    assert (tmp_path / "plots" / "spaced_digits_B0_C2_eval_valid_valid_0_1_history.png").exists()
    assert 0 < yaml.safe_load((tmp_path / "tuning.json").read_text())["machinery_s"]


def test_tuned_yaml_round_trips_through_the_run_cli(tmp_path, spaced):
    assert tune.main(["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "2",
                      "--out", str(tmp_path / "tune")], cell=fake_cell.run_cell) == 0
    tuned = yaml.safe_load((tmp_path / "tune" / "tuned.yaml").read_text())["tuned"]
    specs = []

    def cell(spec, progress=False):
        specs.append(spec)
        return fake_cell.run_cell(spec, progress)

    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--out",
                str(tmp_path / "test")], cell=cell) == 0
    assert len(specs) == 10 and {s.stream for s in specs} == {"digits:B0-C2"}
    spaced_spec = next(s for s in specs if s.method == "spaced")
    assert spaced_spec.hparams == pytest.approx(tuned["spaced"]["digits:B0-C2"]["hparams"])
    assert spaced_spec.train["lr"] == pytest.approx(tuned["spaced"]["digits:B0-C2"]["lr"])
    board = pd.read_csv(tmp_path / "test" / "leaderboard.csv")
    assert set(board["tuning"]) == {"valid budget 2"} and set(board["n_seeds"]) == {5}


def test_a_killed_study_resumes_with_exactly_the_missing_trials(tmp_path, spaced):
    calls = []
    counting = _counting(calls)

    def killed(spec, progress=False):
        if len(calls) == 3:  # the second round dies after its first cell
            raise KeyboardInterrupt
        return counting(spec, progress)

    argv = ["--methods", "spaced,finetune", "--plugin", spaced, "--budget", "3", "--out",
            str(tmp_path)]
    assert tune.main(argv, cell=killed) == 130
    assert len(calls) == 3  # round 1: two cells; round 2: one cell, then the kill
    assert tune.main(argv, cell=counting) == 0
    assert len(calls) == 6  # the other cell of round 2 and round 3's two: nothing twice
    assert len({spec.id for spec in calls}) == 6
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    uninterrupted = tmp_path / "again"
    assert tune.main([*argv[:-1], str(uninterrupted)], cell=fake_cell.run_cell) == 0
    again = pd.read_csv(uninterrupted / "trials.csv")
    pd.testing.assert_series_equal(trials["param_w"], again["param_w"])  # same samples


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


@pytest.mark.parametrize("argv, message", [
    (["--budget", "0"], "--budget must be an integer >= 1, got 0"),
    (["--budget", "-2"], "--budget must be an integer >= 1"),
    (["--streams", "digits:B0-C2?valid=0.1&eval=test"], "tuning on the test split is refused"),
    (["--sampler", "grid"], "--sampler 'grid' is unknown; accepted: tpe, random"),
    (["--rerun", "toy"], "--rerun is not a tuning option"),
    (["--methods", "nosuch"], "unknown method 'nosuch'"),
])
def test_bad_tuning_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    base = ["--methods", "toy", "--plugin", TOY, "--out", str(tmp_path / "out")]
    assert tune.main([*base, *argv], cell=fake_cell.run_cell) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out" / "study.journal").exists()


def test_tuned_rows_are_paired_with_the_baseline_tuned_alike(tmp_path, spaced):
    assert tune.main(["--methods", "replay,spaced", "--plugin", spaced, "--budget", "2",
                      "--out", str(tmp_path / "tune")], cell=fake_cell.run_cell) == 0
    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--out",
                str(tmp_path / "test")], cell=fake_cell.run_cell) == 0
    pairs = pd.read_csv(tmp_path / "test" / "paired.csv")
    # each method has its own tuned learning rate, yet spaced meets the tuned replay
    assert set(pairs["method"]) == {"spaced"} and set(pairs["n_pairs"]) == {5}
    assert set(pairs["paired_config"]) == {"tuned: valid budget 2"}
    # a baseline tuned with hyperparameters of its own (not only a learning rate) pairs too
    assert run(["--config", str(tmp_path / "tune" / "tuned.yaml"), "--out",
                str(tmp_path / "test"), "--baseline", "spaced"], cell=fake_cell.run_cell) == 0
    pairs = pd.read_csv(tmp_path / "test" / "paired.csv")
    assert set(pairs["method"]) == {"replay"} and set(pairs["n_pairs"]) == {5}
    assert set(pairs["baseline"]) == {"spaced"}
    assert "Δ avg mAP vs spaced" in (tmp_path / "test" / "leaderboard.md").read_text()
