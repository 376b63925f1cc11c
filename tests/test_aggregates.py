"""Aggregates across streams (IQM, probability of improvement, permutation Friedman, the CD
omission rule, Kendall's tau) on small examples worked by hand, summary.md built from them,
and the head-initialisation option (PyCIL's classifier init, in the cell id, bad value)."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from torch import nn

import fake_cell
from benchmarks import aggregates, models, stats
from benchmarks.run import main
from benchmarks.runner.spec import RunSpec
from benchmarks.runner.store import Store

TOY = str(Path(__file__).with_name("toy_methods.py"))


# --- transcribed from google-research/rliable, rliable/metrics.py (commit 3ccd9f4) ---------
def rliable_aggregate_iqm(scores):
    return scipy.stats.trim_mean(scores, proportiontocut=0.25, axis=None)


def rliable_probability_of_improvement(scores_x, scores_y):
    num_tasks = scores_x.shape[1]
    task_improvement_probabilities = []
    num_runs_x, num_runs_y = scores_x.shape[0], scores_y.shape[0]
    for task in range(num_tasks):
        if np.array_equal(scores_x[:, task], scores_y[:, task]):
            task_improvement_prob = 0.5
        else:
            task_improvement_prob, _ = scipy.stats.mannwhitneyu(
                scores_x[:, task], scores_y[:, task], alternative='greater')
            task_improvement_prob /= (num_runs_x * num_runs_y)
        task_improvement_probabilities.append(task_improvement_prob)
    return np.mean(task_improvement_probabilities)
# --- end of transcription ----------------------------------------------------------------------


def test_iqm_is_the_mean_of_the_middle_half_worked_by_hand():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == 4.5  # 2 cut each end: (3+4+5+6)/4
    # 10 values: int(2.5) = 2 cut each end, mean of the middle 6
    assert stats.iqm([[0, 1, 2, 3, 4], [5, 6, 7, 8, 90]]) == pytest.approx(27 / 6)


def test_iqm_and_improvement_match_rliable_on_the_same_runs():
    rng = np.random.default_rng(3)
    x, y = rng.normal(50, 5, (5, 4)), rng.normal(48, 5, (5, 4))  # runs x streams
    y[:, 0] = x[:, 0]  # one stream where both are identical: rliable's 0.5
    assert stats.iqm_interval(list(x.T))["iqm"] == pytest.approx(rliable_aggregate_iqm(x),
                                                                  abs=1e-12)
    assert stats.probability_of_improvement(list(x.T), list(y.T))["p"] == pytest.approx(
        rliable_probability_of_improvement(x, y), abs=1e-12)


def test_the_stratified_interval_holds_the_iqm_shrinks_with_runs_and_needs_two_runs():
    rng = np.random.default_rng(0)
    few = stats.iqm_interval([rng.normal(50, 5, 4) for _ in range(3)])
    many = stats.iqm_interval([rng.normal(50, 5, 64) for _ in range(3)])
    for est in (few, many):
        assert est["low"] < est["iqm"] < est["high"]
    assert many["high"] - many["low"] < (few["high"] - few["low"]) / 2  # ~ 1/sqrt(16) as wide
    assert few["n_streams"] == 3 and few["n_runs"] == 12
    strata = [np.array([1.0, 5.0, 2.0]), np.array([7.0, 3.0])]
    assert stats.iqm_interval(strata) == stats.iqm_interval(strata)  # seeded: reproducible
    lone = stats.iqm_interval([np.array([50.0, 52.0]), np.array([60.0])])
    assert lone["iqm"] == pytest.approx(54.0) and math.isnan(lone["low"])  # 3 values: none cut


def test_the_interval_is_scipys_bootstrap_with_one_sample_per_stream():
    strata = [np.array([1.0, 2.0, 4.0]), np.array([10.0, 11.0, 15.0, 13.0])]
    direct = scipy.stats.bootstrap(
        strata, lambda *s, axis: scipy.stats.trim_mean(np.concatenate(s, axis=axis), 0.25,
                                                       axis=axis),
        n_resamples=stats.RESAMPLES, method="percentile", rng=np.random.default_rng(0))
    est = stats.iqm_interval(strata)
    assert (est["low"], est["high"]) == pytest.approx(
        (direct.confidence_interval.low, direct.confidence_interval.high))


def test_probability_of_improvement_worked_by_hand_with_ties_half():
    # stream 1: x (2, 3) against y (2, 1): 2=2 half, 2>1, 3>2, 3>1 -> 3.5 / 4 = 0.875
    # stream 2: x (1, 4) against y (2, 3): 1<2, 1<3, 4>2, 4>3 -> 2 / 4 = 0.5; mean 0.6875
    x = [np.array([2.0, 3.0]), np.array([1.0, 4.0])]
    y = [np.array([2.0, 1.0]), np.array([2.0, 3.0])]
    est = stats.probability_of_improvement(x, y)
    assert est["p"] == pytest.approx(0.6875) and est["low"] <= est["p"] <= est["high"]
    matrix = stats.improvement_matrix({"x": x, "y": y})
    assert matrix["p"].loc["x", "y"] == pytest.approx(0.6875)
    assert matrix["p"].loc["y", "x"] == pytest.approx(0.3125)  # 1 - P(X > Y)
    assert matrix["low"].loc["y", "x"] == pytest.approx(1 - matrix["high"].loc["x", "y"])
    assert math.isnan(matrix["p"].loc["x", "x"])


def test_the_permutation_friedman_p_on_a_tiny_table_worked_by_hand():
    # 3 methods, 2 streams, the same order on both: chi2 = 12*2/(3*4) * (1+4+9) - 3*2*4 = 4.
    # Of the 3!^2 = 36 within-stream orderings, chi2 reaches 4 only when both streams order
    # the methods alike (6 of them): p = 6/36.
    same = pd.DataFrame({"a": [3, 30], "b": [2, 20], "c": [1, 10]}, index=["s1", "s2"])
    test = stats.friedman_permutation(same)
    assert test["chi2"] == pytest.approx(4.0) and test["p"] == pytest.approx(1 / 6)
    assert test["exact"] and test["permutations"] == 36
    opposite = pd.DataFrame({"a": [3, 10], "b": [2, 20], "c": [1, 30]})
    assert stats.friedman_permutation(opposite)["chi2"] == pytest.approx(0.0)
    assert stats.friedman_permutation(opposite)["p"] == pytest.approx(1.0)
    eight = pd.DataFrame(np.arange(16.0).reshape(2, 8))  # 8!^2 orderings: Monte Carlo
    big = stats.friedman_permutation(eight)
    assert not big["exact"] and big["permutations"] == stats.PERMUTATIONS
    assert big["chi2"] == pytest.approx(stats.friedman(eight)["chi2"])
    assert big["p"] < 0.001  # 1/8! exactly; the Monte Carlo p is (0 + 1) / (9999 + 1)


def test_the_critical_difference_is_used_only_below_k_minus_one():
    assert stats.critical_difference(8, 2) == pytest.approx(7.42, abs=0.01)
    assert not stats.critical_difference_separates(8, 2)  # 7.42 > 7
    assert not stats.critical_difference_separates(3, 2)  # 2.34 > 2
    assert stats.critical_difference_separates(3, 10)  # 1.05 < 2


def test_kendall_tau_of_two_rankings_worked_by_hand():
    a = pd.DataFrame([[4, 3, 2, 1], [8, 6, 4, 2]], columns=list("abcd"), index=["s1", "s2"])
    b = pd.DataFrame([[4, 3, 1, 2], [8, 6, 2, 4]], columns=list("abcd"), index=["s1", "s2"])
    # rankings a < b < c < d and a < b < d < c: 5 concordant pairs, 1 discordant: 4/6
    tau = stats.rank_correlation(a, b)
    assert tau["tau"] == pytest.approx(2 / 3) and (tau["low"], tau["high"]) == pytest.approx(
        (2 / 3, 2 / 3))  # every resample of two alike streams ranks alike
    assert stats.rank_correlation(a, -a)["tau"] == pytest.approx(-1.0)
    assert math.isnan(stats.rank_correlation(a.iloc[:1], b.iloc[:1])["low"])  # one stream


def test_kendall_tau_interval_is_wide_when_one_stream_of_five_reverses_the_order():
    b = pd.DataFrame([[4, 3, 2, 1]] * 5, columns=list("abcd"))
    a = b.copy()
    a.iloc[1] = [1, 2, 3, 4]
    tau = stats.rank_correlation(a, b)
    # the mean ranks agree (tau 1) unless a resample draws the reversed stream 3 or more times
    # in 5, which has probability 0.058 > 2.5%: the interval reaches -1
    assert tau["tau"] == pytest.approx(1.0) and (tau["low"], tau["high"]) == (-1.0, 1.0)


# --- summary.md -------------------------------------------------------------------------------
def runs_table(values: dict, config: str = "") -> pd.DataFrame:
    """One row per run: ``values`` maps (method, stream) to its runs' headline."""
    return pd.DataFrame([{"stream": s, "method": m, "tuning": "", "config": config,
                          "hparams_config": "", "train_config": config, "seed": seed,
                          "value": v}
                         for (m, s), runs in values.items() for seed, v in enumerate(runs)])


def test_scores_are_normalised_by_finetune_and_joint_per_stream():
    runs = runs_table({("finetune", "s1"): [10, 20], ("joint", "s1"): [50, 70],
                       ("replay", "s1"): [40, 45], ("finetune", "s2"): [0, 0],
                       ("joint", "s2"): [10, 10], ("replay", "s2"): [5, 2]})
    table = aggregates.run_table(runs)
    scores = aggregates.stream_table(table)
    methods = table.drop_duplicates("entry").set_index("entry")["method"]
    normalised, text, unit = aggregates.normalise(scores, table, methods)
    replay = normalised[normalised["method"] == "replay"].set_index(["stream", "seed"])["value"]
    # s1: finetune 15, joint 60 -> (40-15)/45, (45-15)/45; s2: finetune 0, joint 10
    assert replay.to_dict() == pytest.approx({("s1", 0): 25 / 45, ("s1", 1): 30 / 45,
                                              ("s2", 0): 0.5, ("s2", 1): 0.2})
    assert text.startswith("Normalised score") and unit == ""
    without = table[table["method"] != "joint"]
    raw, text, unit = aggregates.normalise(scores.drop(columns="joint"), without,
                                           methods.drop("joint"))
    assert raw["value"].tolist() == without["value"].tolist() and unit == "%"
    assert "joint are not both on every stream" in text


def test_summary_leads_with_iqm_and_improvement_and_omits_a_useless_cd(tmp_path):
    runs = runs_table({(m, s): [base + 1, base + 2] for s in ("s1", "s2")
                       for m, base in (("finetune", 0), ("joint", 10), ("replay", 5))})
    text = aggregates.summary(runs, tmp_path)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Interquartile mean across streams and seeds",
                            "## Probability of improvement", "## Ranks over streams"]
    assert "| replay | 0.500 | [0.450, 0.550] | 2 | 4 |" in text  # (6.5-1.5)/10 +- 0.5/10
    assert "| P(row > column) | joint | replay | finetune |" in text  # in IQM order
    assert "| replay | 0.00 [0.00, 0.00] | – | 1.00 [1.00, 1.00] |" in text
    assert "Separated: all 3 pairs (no interval contains 0.5)." in text
    assert "No Nemenyi diagram: with 3 methods on 2 streams the critical difference is 2.34" \
        in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary_improvement.png",
                                                          "summary_iqm.png"]


def test_summary_names_the_pairs_it_cannot_separate(tmp_path):
    runs = runs_table({**{(m, s): [base + 1, base + 2] for s in ("s1", "s2")
                          for m, base in (("finetune", 0), ("joint", 10), ("replay", 5))},
                       ("twin", "s1"): [6.2, 7.0], ("twin", "s2"): [6.2, 7.0]})
    text = aggregates.summary(runs, tmp_path)
    line = next(line for line in text.splitlines() if line.startswith("Separated"))
    # twin (6.2, 7.0) against replay (6, 7) per stream: 1 + 0 + 1 + 1/2 of 4 pairs = 0.625;
    # with 2 runs a stream, resamples that draw replay's 7 twice or twin's 6.2 twice move it
    # to either side of 0.5
    prefix = "Separated: 5 of 6 pairs; not separated (the interval contains 0.5): twin vs " \
        "replay 0.62 ["
    assert line.startswith(prefix) and line.endswith("].")
    low, high = map(float, line[len(prefix):-2].split(", "))
    assert low < 0.5 < high


def test_summary_draws_the_cd_diagram_when_it_can_separate(tmp_path):
    streams = [f"s{i}" for i in range(10)]
    runs = runs_table({(m, s): [base, base + 1] for s in streams
                       for m, base in (("a", 1), ("b", 2), ("c", 3))})
    text = aggregates.summary(runs, tmp_path)
    assert "Nemenyi critical difference at 0.05: 1.05" in text
    assert "Raw headline scores (%)" in text  # no finetune / joint here
    assert (tmp_path / "summary_ranks.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_reports_the_ranking_change_under_kaiming_heads(tmp_path):
    linear = runs_table({(m, s): [base, base + 1] for s in ("s1", "s2")
                         for m, base in (("a", 1), ("b", 2), ("c", 3))})
    kaiming = runs_table({(m, s): [base, base + 1] for s in ("s1", "s2")
                          for m, base in (("a", 1), ("b", 3), ("c", 2))},
                         config="head_init=kaiming")
    runs = pd.concat([linear, kaiming], ignore_index=True)
    text = aggregates.summary(runs, tmp_path)
    assert "| c (head_init=kaiming) |" in text  # its own entry in the aggregates
    # a < b < c against a < c < b: 2 concordant, 1 discordant -> tau 1/3
    assert "Kendall's tau between the rankings of 3 methods (a, b, c) with the default head " \
           "and with head_init=kaiming, over 2 streams: 0.33 [0.33, 0.33]" in text



def test_the_sensitivity_reads_kaiming_runs_made_on_some_streams_only(tmp_path):
    """As the reference: the default head on every stream, kaiming on the long-tailed ones;
    the kaiming entries are not ranked across streams, yet their tau is reported."""
    linear = runs_table({(m, s): [base, base + 1] for s in ("s1", "s2", "s3")
                         for m, base in (("a", 1), ("b", 2), ("c", 3))})
    kaiming = runs_table({(m, s): [base, base + 1] for s in ("s1", "s2")
                          for m, base in (("a", 1), ("b", 3), ("c", 2))},
                         config="head_init=kaiming")
    runs = pd.concat([linear, kaiming], ignore_index=True)
    text = aggregates.summary(runs, tmp_path)
    assert "| c (head_init=kaiming) |" not in text
    assert "Kendall's tau between the rankings of 3 methods (a, b, c) with the default head " \
           "and with head_init=kaiming, over 2 streams: 0.33 [0.33, 0.33]" in text


def test_methods_of_one_label_mode_are_ranked_on_their_modes_streams(tmp_path):
    """rebll (multi-label) and icarl (single-label) miss half the streams: left out of the
    overall comparison, each is ranked on its own mode's streams; one mode adds nothing."""
    values = {(m, s): [base, base] for s in ("m1", "m2", "s1", "s2")
              for m, base in (("finetune", 0), ("joint", 10), ("replay", 2))}
    values.update({("rebll", "m1"): [5, 5], ("rebll", "m2"): [5, 5],
                   ("icarl", "s1"): [8, 8], ("icarl", "s2"): [8, 8]})
    kaiming = runs_table({(m, s): [base, base] for s in ("s1", "s2")  # normalised by linear's
                          for m, base in (("finetune", 1), ("joint", 9), ("replay", 4))},
                         config="head_init=kaiming")
    runs = pd.concat([runs_table(values), kaiming], ignore_index=True)
    modes = {"m1": "multi", "m2": "multi", "s1": "single", "s2": "single"}
    text = aggregates.summary(runs, tmp_path, modes)
    overall, multi, single = text.split("\n## The ")
    assert "| rebll |" not in overall and "| icarl |" not in overall
    assert "Not compared (missing on some stream): finetune (head_init=kaiming), icarl, " \
        "joint (head_init=kaiming), rebll, replay (head_init=kaiming)." in overall
    assert multi.startswith("multi-label streams on their own\n\nThe 2 multi-label streams, "
                            "with every method that ran on all of them (4)")
    assert "### Interquartile mean across streams and seeds" in multi
    assert "| rebll | 0.500 | [0.500, 0.500] | 2 | 4 |" in multi and "icarl" not in multi
    assert "| icarl | 0.800 | [0.800, 0.800] | 2 | 4 |" in single and "rebll" not in single
    assert "| joint (head_init=kaiming) | 0.900 | [0.900, 0.900] | 2 | 4 |" in single
    assert "\n### Interquartile mean across streams and seeds\n" in single
    assert {"summary_iqm_multi.png", "summary_improvement_single.png"} <= {
        p.name for p in tmp_path.iterdir()}
    one = {stream: "multi" for stream in modes}
    (tmp_path / "one").mkdir()
    alone = aggregates.summary(runs, tmp_path / "one", one)
    assert "streams on their own" not in alone
    single_stream = {"m1": "multi", "s1": "single"}  # one stream per mode: nothing to add
    runs = runs[runs["stream"].isin(single_stream)]
    (tmp_path / "two").mkdir()
    text = aggregates.summary(runs, tmp_path / "two", single_stream)
    assert "streams on their own" not in text


# --- head initialisation ----------------------------------------------------------------------
# transcribed from G-U-N/PyCIL, convs/linears.py (commit 87cc411), SimpleLinear.reset_parameters
def pycil_reset_parameters(self):
    nn.init.kaiming_uniform_(self.weight, nonlinearity='linear')
    nn.init.constant_(self.bias, 0)
# --- end of transcription ----------------------------------------------------------------------


def test_kaiming_head_is_pycils_simple_linear_and_linear_is_untouched():
    torch.manual_seed(0)
    ours = nn.Linear(128, 10)
    models.init_head(ours, "kaiming")
    torch.manual_seed(0)
    theirs = nn.Linear(128, 10)
    pycil_reset_parameters(theirs)
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    torch.manual_seed(1)
    net = models.build("smallcnn", 1000, in_channels=1, head_init="kaiming")
    weight = net.head.weight.detach().double()
    bound = math.sqrt(3 / 128)  # gain 1 (linear): U(-sqrt(3 / fan_in), +)
    assert torch.all(net.head.bias == 0) and weight.abs().max() <= bound
    # uniform: variance bound^2 / 3 = 1 / 128; over 128 000 draws its sd is ~0.4% of that
    assert weight.var().item() == pytest.approx(1 / 128, rel=0.02)
    torch.manual_seed(1)
    default = models.build("smallcnn", 1000, in_channels=1)
    torch.manual_seed(1)
    plain = models.build("smallcnn", 1000, in_channels=1, head_init="linear")
    assert torch.equal(default.head.weight, plain.head.weight)
    assert default.head.bias.abs().max() <= 1 / math.sqrt(128) and default.head.bias.abs().sum() > 0
    with pytest.raises(ValueError, match="accepted: linear, kaiming"):
        models.build("smallcnn", 4, in_channels=1, head_init="xavier")


def test_head_init_is_in_the_cell_id_and_its_default_leaves_old_ids_alone():
    old = RunSpec("replay", "digits:B0-C2", 0, {}, {"epochs": 2})
    default = RunSpec("replay", "digits:B0-C2", 0, {}, {"epochs": 2, "head_init": "linear"})
    kaiming = RunSpec("replay", "digits:B0-C2", 0, {}, {"epochs": 2, "head_init": "kaiming"})
    assert default.id == old.id and default.train == {"epochs": 2}
    assert kaiming.id != old.id and kaiming.train["head_init"] == "kaiming"
    assert RunSpec.from_dict(kaiming.to_dict()).id == kaiming.id


def test_the_head_init_flag_and_yaml_key_reach_the_spec_and_a_bad_value_exits_2(
        tmp_path, capsys):
    argv = ["--methods", "toy", "--plugin", TOY, "--seeds", "0", "--quiet"]
    assert main([*argv, "--head-init", "kaiming", "--out", str(tmp_path / "a")],
                cell=fake_cell.run_cell) == 0
    (record,) = Store(tmp_path / "a").load_all().values()
    assert record["spec"]["train"] == {"head_init": "kaiming"}
    config = tmp_path / "grid.yaml"
    config.write_text("head_init: linear\n")
    assert main([*argv, "--config", str(config), "--out", str(tmp_path / "b")],
                cell=fake_cell.run_cell) == 0
    (plain,) = Store(tmp_path / "b").load_all().values()
    assert plain["spec"]["train"] == {} and plain["id"] != record["id"]
    capsys.readouterr()
    assert main([*argv, "--head-init", "xavier", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err == ("error: argument --head-init: invalid choice: 'xavier' (choose from "
                   "'linear', 'kaiming')\n") and not (tmp_path / "c").exists()


def test_a_cell_trains_with_the_head_its_spec_names(cell):
    plain, kaiming = cell("finetune"), cell("finetune", head_init="kaiming")
    assert plain["train"]["head_init"] == "linear" and kaiming["train"]["head_init"] == "kaiming"
    assert plain["summary"]["avg_mAP"] != kaiming["summary"]["avg_mAP"]  # another start
