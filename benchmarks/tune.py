"""Tuning whose choices transfer: successive halving over seeds, on held-out streams, against
the method's defaults.

    python -m benchmarks.tune --methods replay,rebll --suite imbacil-v1      # a suite
    python -m benchmarks.run --config results/tune-default/tuned.yaml         # then test
    python -m benchmarks.tune --methods replay --streams digits:B0-C2         # one stream

What is tuned on: with ``--suite``, the suite's tuning streams (benchmarks/suites), one study
per method and label mode, whose choice is then evaluated unchanged on every evaluation
stream of that label mode; with ``--streams``, one study per method and stream, tuned on the
stream's validation split (``valid=0.1&eval=valid`` is added to a stream without a ``valid``
option, ``eval=valid`` to one with it; ``eval=test`` is refused) and tested on its test split.
The test split is never evaluated while tuning. Tuning seeds (default 100, 101, ...) are
disjoint from the test seeds :data:`TEST_SEEDS` that ``tuned.yaml`` asks for.

The objective (:func:`objective`) is the test headline measured on validation: average mAP
over sessions (multi-label), or average over sessions of the balanced accuracy, the mean of
the per-class accuracies (single-label: validation images are carved from the long-tailed
training set, while the test set is class-balanced, where accuracy is balanced accuracy).
A seed's value is the objective's mean over the study's tuning streams.

Each study (:class:`Tuner`) has trial 0, the method's defaults (``enqueue_trial``), and
``--budget`` candidates (default 9) drawn from the method's declared space and the learning
rate (log-uniform over the recipe's ÷30 to ×30) by a sampler seeded per study and trial
(a hash of method, study and ``--sampler-seed``: every study draws its own candidates, and a
resumed study draws what an uninterrupted one would). Successive halving over seeds
(:class:`SeedHalving`, an Optuna pruner fed each seed's value through ``trial.report``): every
candidate runs 1 seed, the best third 3 seeds, the best ninth 9 seeds, ... up to one
candidate; the defaults always run every rung's seeds. The budget in cells,
:func:`planned_cells`, is the same for every method. The best candidate replaces the
defaults only if it beats them, paired over the final rung's seeds, by more than two
standard errors of the mean difference; otherwise the defaults stand (``tuned.yaml`` says
which, and why). A chosen numeric value within 5% of its range's ends (on a log scale for a
log range: a factor 1.4 of the learning rate's bounds) is flagged in ``tuning.json``.

Rounds run every study's due cells together (in parallel with ``--workers`` or ``--executor
ray``); studies live in ``OUT/study.journal``, cells in ``OUT/records``: the same command
again resumes after any kill, running no cell twice and adding no trial.

Output in ``--out`` (default ``results/tune-<name>``): ``trials.csv`` (one row per trial:
method, study, trial, state, its parameters, seeds run, mean objective), ``tuned.yaml`` (a
grid YAML for ``benchmarks.run --config``), ``tuning.json`` (per study: defaults and best
per seed, the difference and its two standard errors, the choice, parameters on a bound,
cells planned and reported; the wall time of this command and of every finished command on
the folder, summed (a tuning run in parts), the trials' cell time and the machinery's) and
``plots/`` (per study, each trial's per-seed values).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from optuna.pruners import BasePruner

from benchmarks.run import (UsageError, _at_least, _usage_error, check_heavy, chosen_suite,
                            download, make_plan, parse, parser as run_parser)
from benchmarks import studies
from benchmarks.runner.store import Store, write_text

SAMPLERS = ("random", "tpe")
LR_SPAN = 30.0  # the learning rate is searched over the recipe's lr / 30 to lr * 30
ETA = 3  # successive halving keeps the best 1/ETA and gives them ETA times the seeds
BUDGET = 9
TEST_SEEDS = [0, 1, 2, 3, 4]
TUNE_SEED0 = 100  # tuning seeds are 100, 101, ...: never a test seed
NOT_FOR_TUNING = ("rerun", "baseline", "list", "tensorboard")
EPILOG = """\
--suite NAME tunes on the suite's tuning streams, one configuration per method and label
mode; --streams tunes each stream on its validation split (valid=0.1&eval=valid is added to
a name without a valid option; eval=test is refused). Trial 0 is the method's defaults;
--budget candidates go through successive halving over seeds (1, 3, 9, ...); the best
replaces the defaults only if it beats them by more than two standard errors. The same
command again resumes (OUT/study.journal). Then test the chosen configurations:
  python -m benchmarks.run --config OUT/tuned.yaml
exit status: 0 every study finished; 1 some trial failed (counted, recorded);
  2 bad input or a failed --download (one 'error:' line, nothing run); 130 interrupted
  (resume with the same command).
"""


def parser() -> argparse.ArgumentParser:
    """The run CLI's flags (training, execution, output) plus the tuning ones."""
    p = run_parser()
    p.prog = "python -m benchmarks.tune"
    p.description = ("Tune every method with the same budget of cells (successive halving "
                     "over seeds, the defaults as trial 0) on held-out validation data and "
                     "write tuned.yaml for benchmarks.run --config.")
    p.epilog = EPILOG
    helps = {"seeds": f"tuning seeds, none of {TEST_SEEDS} (default {TUNE_SEED0}, "
                      f"{TUNE_SEED0 + 1}, ...: as many as the last rung needs)",
             "suite": "tune on the tuning streams of a named suite, e.g. imbacil-v1, one "
                      "configuration per method and label mode (instead of --streams)"}
    for action in p._actions:
        action.help = helps.get(action.dest, action.help)
    p.add_argument("--budget", type=int, default=None,
                   help=f"candidate configurations per study besides the defaults (the same "
                        f"for every method; default {BUDGET}: 9 x 1 seed, 3 x 3, 1 x 9)")
    p.add_argument("--sampler", default="random",
                   help=f"{' or '.join(SAMPLERS)} (default random; every candidate is drawn "
                        "before any result, so TPE draws as a seeded random sampler would)")
    p.add_argument("--sampler-seed", type=_at_least(int, 0), default=0,
                   help="seeds the sampler, with the study and trial (default 0)")
    return p


def rungs(budget: int) -> list[tuple[int, int]]:
    """``(candidates kept, seeds)`` per rung of successive halving: all ``budget`` candidates
    on 1 seed, then ceil(budget / ETA^r) on ETA^r seeds, down to one candidate."""
    out = [(budget, 1)]
    while out[-1][0] > 1:
        out.append((math.ceil(budget / ETA ** len(out)), ETA ** len(out)))
    return out


def planned_cells(budget: int, streams: int) -> int:
    """The cells of one study: at each rung, its candidates plus the defaults, each on the
    seeds that rung adds, each seed on every tuning stream."""
    total, seeds_before = 0, 0
    for kept, seeds in rungs(budget):
        total += (kept + 1) * (seeds - seeds_before)
        seeds_before = seeds
    return total * streams


class SeedHalving(BasePruner):
    """Successive halving over seeds (Jamieson & Talwalkar, AISTATS 2016; Optuna's
    ``SuccessiveHalvingPruner`` is its asynchronous form, whose choices depend on the order
    trials finish: this one waits for every candidate of a rung, so the same results give
    the same choices). A trial reports one value per seed (step = the seed's position);
    after the ``seeds`` of rung r, a candidate carries on only if its mean over those seeds
    ranks among the ``kept`` of rung r + 1 (ties: the lower trial number), among the
    candidates that reached rung r. The defaults (user attribute ``defaults``) are never
    pruned."""

    def __init__(self, budget: int):
        self.rungs = rungs(budget)

    def prune(self, study, trial) -> bool:
        from optuna.trial import TrialState

        done = len(trial.intermediate_values)
        seeds = [s for _, s in self.rungs[:-1]]
        if trial.user_attrs.get("defaults") or done not in seeds:
            return False
        keep = self.rungs[seeds.index(done) + 1][0]
        peers = [t for t in study.get_trials(deepcopy=False)
                 if not t.user_attrs.get("defaults") and t.state != TrialState.FAIL
                 and len(t.intermediate_values) >= done]
        ranked = sorted(peers, key=lambda t: (-_mean(per_seed(t)[:done]), t.number))
        return trial.number not in {t.number for t in ranked[:keep]}


def per_seed(trial) -> list[float]:
    """A trial's reported values in seed order."""
    return [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]


def two_se_rule(best: list[float], defaults: list[float]) -> dict:
    """Whether ``best`` beats ``defaults`` (values on the same seeds) by more than two
    standard errors of the mean paired difference (none with one seed: no error estimate,
    so the defaults stand)."""
    diffs = [b - d for b, d in zip(best, defaults)]
    mean = _mean(diffs)
    se = (math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
          if len(diffs) > 1 else float("nan"))
    return {"difference": mean, "two_se": 2 * se, "seeds": len(diffs),
            "choice": "tuned" if len(diffs) > 1 and mean > 2 * se else "defaults"}


def objective(record: dict) -> float:
    """A done record's validation objective: average mAP over sessions (multi-label), or the
    average over sessions of the balanced accuracy, the mean of the accuracies of the seen
    classes that have validation images (single-label)."""
    if record["stream"]["label_mode"] == "multi":
        return float(record["summary"]["avg_mAP"])
    return _mean([_mean([v for v in s["per_class"] if v is not None])
                  for s in record["sessions"]])


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def validation_stream(name: str) -> str:
    """``name`` on its validation split; UsageError for a stream that asks for test."""
    from benchmarks import streams
    from benchmarks.streams.names import parse_name

    options = parse_name(name).options
    if options.get("eval") == "test":
        raise UsageError(f"stream {name!r} asks for eval=test: tuning on the test split is "
                         "refused; drop eval or use eval=valid")
    extra = {"eval": "valid", **({} if "valid" in options else {"valid": "0.1"})}
    query = "&".join(f"{k}={v}" for k, v in {**options, **extra}.items())
    return streams.canonical(name.partition("?")[0] + "?" + query)


def test_stream(name: str) -> str:
    """The tuned stream's name for testing: its validation options dropped."""
    from benchmarks import streams
    from benchmarks.streams.names import parse_name

    parsed = parse_name(name)
    kept = {k: v for k, v in parsed.options.items() if k not in ("valid", "eval", "valid_by")}
    return streams.canonical(str(replace(parsed, options=kept)))


def search_space(method: str, stream: str, fixed: dict, lr_given: bool) -> dict:
    """Optuna distributions: the method's space less the ``fixed`` keys, plus ``lr`` around
    the stream recipe's unless a learning rate is given."""
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    from benchmarks import streams
    from methods import get

    space = {}
    for key, entry in get(method).space.items():
        if key in fixed:
            continue
        kind = entry[0]
        space[key] = (CategoricalDistribution(list(entry[1])) if kind == "choice" else
                      IntDistribution(entry[1], entry[2]) if kind == "int" else
                      FloatDistribution(entry[1], entry[2], log=kind == "log"))
    if not lr_given:
        lr = streams.parse(stream)[0].recipe["lr"]
        space["lr"] = FloatDistribution(lr / LR_SPAN, lr * LR_SPAN, log=True)
    return space


def on_bound(params: dict, space: dict) -> list[str]:
    """The numeric parameters within studies.BOUND_SHARE of their range's ends (log scale for a log
    range)."""
    flagged = []
    for key, value in params.items():
        dist = space.get(key)
        if dist is None or not hasattr(dist, "low") or dist.high == dist.low:
            continue
        scale = math.log if getattr(dist, "log", False) else float
        share = (scale(value) - scale(dist.low)) / (scale(dist.high) - scale(dist.low))
        if min(share, 1 - share) <= studies.BOUND_SHARE:
            flagged.append(key)
    return flagged


@dataclass(frozen=True)
class Study:
    """One study: a method tuned on ``tuning`` streams for the ``evaluation`` streams."""

    method: str
    group: str  # a label mode (suite) or a test stream (--streams)
    name: str
    tuning: tuple
    evaluation: tuple


def main(argv=None, cell: Optional[Callable[..., dict]] = None) -> int:
    """Run the tuning CLI; ``cell`` replaces the real cell (tests)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from benchmarks import streams
    from benchmarks.download import DownloadError
    from benchmarks.runner.grid import GridError, parse_seeds, parse_sets, split_list
    from benchmarks.runner.ray_executor import ClusterError
    from methods import MethodError, discover, load_plugin

    try:
        args, config = parse(argv, parser)
        discover()
        for plugin in args.plugin:
            load_plugin(plugin)
        given = [f"--{k}" for k in NOT_FOR_TUNING if getattr(args, k) not in (None, False)]
        if given or config.get("grid") or config.get("tuned"):
            raise UsageError(f"{', '.join(given) or 'grid/tuned in --config'} is not a "
                             "tuning option")
        args.budget = BUDGET if args.budget is None else args.budget
        if args.budget < 1:
            raise UsageError(f"--budget must be an integer >= 1, got {args.budget}")
        if args.sampler not in SAMPLERS:
            raise UsageError(f"--sampler {args.sampler!r} is unknown; accepted: "
                             + ", ".join(SAMPLERS))
        need = rungs(args.budget)[-1][1]
        seeds = (parse_seeds(args.seeds) if args.seeds is not None
                 else list(range(TUNE_SEED0, TUNE_SEED0 + need)))
        if set(seeds) & set(TEST_SEEDS) or len(seeds) < need:
            raise UsageError(f"--seeds must give at least {need} tuning seeds (the last rung's "
                             f"for --budget {args.budget}), none of the test seeds "
                             f"{', '.join(map(str, TEST_SEEDS))}; got {args.seeds}")
        args.seeds = ",".join(map(str, seeds[:need]))
        groups = _groups(args, split_list)
        args.streams = ",".join(dict.fromkeys(s for _, tune, _ in groups for s in tune))
        args.name = args.name or "default"
        args.out = args.out or str(Path("results") / f"tune-{args.name}")
        out = Path(args.out)
        if (out / "records").is_dir() and not (out / "study.journal").exists():
            raise UsageError(f"--out {out} holds the records of a benchmarks.run grid; tune "
                             "into a new folder (or one a tune wrote)")
        suite, args.suite = args.suite, None
        plan = make_plan(args, config)
        studies, fixed = _studies(plan, groups, suite), parse_sets(args.set)
        for study in studies:
            if not search_space(study.method, study.tuning[0], fixed.get(study.method, {}),
                                args.lr is not None):
                raise UsageError(f"nothing to tune for {study.method}: its search space is "
                                 "empty once --set and --lr are applied; drop --lr or a --set")
        check_heavy(plan, args)
        download(plan, args)
        tuner = Tuner(args, plan, studies, suite, cell)
    except (UsageError, GridError, MethodError, streams.StreamError, ClusterError,
            DownloadError) as exc:
        return _usage_error(exc)
    return tuner.run()


def _groups(args, split_list) -> list[tuple[str, list[str], list[str]]]:
    """``(group, tuning streams, evaluation streams)``: a suite's label modes, or each of
    ``--streams`` on its validation split (default the run CLI's default stream)."""
    from benchmarks.run import DEFAULT_STREAM

    suite = chosen_suite(args)
    if suite:
        return [(mode, [validation_stream(s) for s in suite.streams("tuning", mode)],
                 suite.streams("evaluation", mode)) for mode in suite.label_modes()]
    names = split_list(args.streams or DEFAULT_STREAM)
    return [(test_stream(n), [validation_stream(n)], [test_stream(n)]) for n in names]


def _studies(plan, groups, suite: Optional[str]) -> list[Study]:
    """One study per method and group that the plan runs (a method skips a label mode it
    does not support)."""
    planned = {(spec.method, spec.stream) for spec in plan.specs}
    methods = list(dict.fromkeys(spec.method for spec in plan.specs))
    return [Study(method, group, f"{method}@{suite + ':' if suite else ''}{group}",
                  tuple(tune), tuple(evaluation))
            for group, tune, evaluation in groups for method in methods
            if all((method, s) in planned for s in tune)]


class Tuner:
    """The studies of one tuning command, run in rounds of every study's due cells."""

    def __init__(self, args: argparse.Namespace, plan, studies: list[Study],
                 suite: Optional[str], cell):
        import optuna

        from benchmarks.runner.grid import parse_seeds, parse_sets
        from benchmarks.runner.version import code_version

        self.args, self.plan, self.cell, self.suite = args, plan, cell, suite
        self.out, self.store, self.version = Path(plan.out), Store(plan.out), code_version()
        self.fixed, self.seeds = parse_sets(args.set), parse_seeds(args.seeds)
        self.rungs = rungs(args.budget)
        self.protocol = {"budget": args.budget, "seeds": self.seeds, "sampler": args.sampler,
                         "sampler_seed": args.sampler_seed}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(self.out / "study.journal")))
        self.specs = {s.name: s for s in studies}
        self.studies = {}
        for study in studies:
            self.studies[study.name] = optuna.create_study(
                study_name=study.name, storage=storage, direction="maximize",
                pruner=SeedHalving(args.budget), load_if_exists=True)
            kept = self.studies[study.name].user_attrs.get("protocol")
            if kept is None:
                self.studies[study.name].set_user_attr("protocol", self.protocol)
            elif kept != self.protocol:
                raise UsageError(f"--out {self.out} holds study {study.name} run with "
                                 f"{_items(kept)}; resume it with the same options or tune "
                                 "into another folder")
        self.machinery_s = 0.0

    def say(self, line: str) -> None:
        if not self.plan.quiet:
            print(line, file=sys.stderr)

    def run(self) -> int:
        from benchmarks.run import run_cells

        cells = sum(planned_cells(self.args.budget, len(s.tuning)) for s in self.specs.values())
        self.say(f"tuning {len(self.studies)} studies: the defaults and {self.args.budget} "
                 f"candidates each, seeds per rung {[s for _, s in self.rungs]}, at most "
                 f"{cells} cells; studies in {self.out / 'study.journal'}")
        started = time.perf_counter()
        try:
            while True:
                tick = time.perf_counter()
                due = [item for name in self.studies for item in self._due(name)]
                self.machinery_s += time.perf_counter() - tick
                if not due:
                    break
                todo = self.store.pending([spec for *_, specs in due for spec in specs])
                if todo:
                    run_cells(self.plan, todo, self.store, self.version, self.cell)
                tick = time.perf_counter()
                records = self.store.load_all()
                for name, number, step, specs in due:
                    self._report(name, number, step, specs, records)
                self.machinery_s += time.perf_counter() - tick
        except KeyboardInterrupt:
            print(f"interrupted: finished cells and trials are kept in {self.out}; run the "
                  "same command to resume", file=sys.stderr)
            return 130
        paths = self.write(time.perf_counter() - started)
        print(" ".join(str(path) for path in paths))
        failed = sum(t.state.name == "FAIL" for s in self.studies.values()
                     for t in s.get_trials(deepcopy=False))
        if failed:
            print(f"{failed} trials failed (their cells' errors are in {self.store.records})",
                  file=sys.stderr)
        return 1 if failed else 0

    def _due(self, name: str) -> list[tuple]:
        """``(study, trial number, seed position, cells)`` of every seed the study's current
        rung still needs; a rung whose seeds are all in is decided first (pruned trials told
        PRUNED, the last rung's told COMPLETE), so that this is derived from the journal
        alone and a resumed command picks up where a kill left."""
        import optuna
        from optuna.trial import TrialState

        study = self.studies[name]
        self._ask_all(name)
        for r, (_, seeds) in enumerate(self.rungs):
            running = [t for t in study.get_trials(deepcopy=False)
                       if t.state == TrialState.RUNNING]
            due = [(name, t.number, k, self._cells(name, t, self.seeds[k])) for t in running
                   for k in range(len(t.intermediate_values), seeds)]
            if due:
                return due
            for frozen in running:
                if len(frozen.intermediate_values) != seeds:
                    continue  # decided at this rung already, and part-way through the next
                trial = optuna.trial.Trial(study, frozen._trial_id)
                if r == len(self.rungs) - 1:
                    study.tell(trial, _mean(per_seed(frozen)))
                elif trial.should_prune():
                    study.tell(trial, state=TrialState.PRUNED)
        return []

    def _ask_all(self, name: str) -> None:
        """Trial 0, the defaults (enqueued, so that a kill between creating it and asking
        for it leaves it waiting), then the candidates, up to the budget."""
        import optuna
        from optuna.trial import TrialState

        study, spec = self.studies[name], self.specs[name]
        trials = study.get_trials(deepcopy=False)
        if not trials:
            study.enqueue_trial({}, user_attrs={"defaults": True})
            trials = study.get_trials(deepcopy=False)
        space = search_space(spec.method, spec.tuning[0], self.fixed.get(spec.method, {}),
                             self.args.lr is not None)
        base = int(hashlib.sha1(f"{name}|{self.args.sampler_seed}".encode()).hexdigest()[:8],
                   16)
        while len(trials) < self.args.budget + 1 or any(
                t.state == TrialState.WAITING for t in trials):
            if any(t.state == TrialState.WAITING for t in trials):
                study.ask({})  # the enqueued defaults
            else:
                seed = base + len(trials)
                study.sampler = (optuna.samplers.TPESampler(seed=seed)
                                 if self.args.sampler == "tpe"
                                 else optuna.samplers.RandomSampler(seed=seed))
                study.ask(space)
            trials = study.get_trials(deepcopy=False)

    def _cells(self, name: str, trial, seed: int):
        """The cells of ``trial`` on ``seed``: one per tuning stream of the study."""
        from benchmarks.runner.grid import expand

        spec = self.specs[name]
        hparams = {k: v for k, v in trial.params.items() if k != "lr"}
        train = dict(self.plan.specs[0].train)
        if "lr" in trial.params:
            train["lr"] = trial.params["lr"]
        grid = expand([spec.method], list(spec.tuning), [seed],
                      sets={spec.method: {**self.fixed.get(spec.method, {}), **hparams}},
                      train=train, data_root=self.args.data_root,
                      plugins=self.plan.specs[0].plugins, suite=self.suite or "")
        return grid.specs

    def _report(self, name: str, number: int, step: int, specs, records: dict) -> None:
        """Report the seed's value (the mean objective of its cells), or fail the trial if
        a cell failed."""
        import optuna
        from optuna.trial import TrialState

        study = self.studies[name]
        frozen = study.get_trials(deepcopy=False)[number]
        if frozen.state != TrialState.RUNNING or step in frozen.intermediate_values:
            return
        done = [records.get(spec.id) for spec in specs]
        trial = optuna.trial.Trial(study, frozen._trial_id)
        if any(r is None or r["status"] != "done" for r in done):
            study.tell(trial, state=TrialState.FAIL)
            return
        trial.report(_mean(objective(r) for r in done), step)

    def choices(self) -> dict:
        """Per study: the defaults' and the best candidate's values per seed, the two-SE
        rule's verdict, the chosen parameters, those on a bound, cells planned and reported."""
        from optuna.trial import TrialState

        result = {}
        for name, study in self.studies.items():
            spec = self.specs[name]
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            defaults = next((t for t in done if t.user_attrs.get("defaults")), None)
            best = max((t for t in done if not t.user_attrs.get("defaults")),
                       key=lambda t: (t.value, -t.number), default=None)
            entry = {"method": spec.method, "group": spec.group,
                     "tuning_streams": list(spec.tuning),
                     "evaluation_streams": list(spec.evaluation),
                     "cells_planned": planned_cells(self.args.budget, len(spec.tuning)),
                     "cells_reported": sum(len(t.intermediate_values) for t in trials)
                     * len(spec.tuning),
                     "defaults": defaults and {"trial": defaults.number,
                                               "per_seed": per_seed(defaults)},
                     "best": best and {"trial": best.number, "params": best.params,
                                       "per_seed": per_seed(best)}}
            if best and defaults:
                entry.update(two_se_rule(per_seed(best), per_seed(defaults)))
                space = search_space(spec.method, spec.tuning[0],
                                     self.fixed.get(spec.method, {}), self.args.lr is not None)
                entry["on_bound"] = on_bound(best.params, space)
            else:
                entry["choice"] = "tuned" if best else "defaults" if defaults else None
            result[name] = entry
        return result

    def write(self, total_s: float) -> list[Path]:
        """trials.csv, tuned.yaml, tuning.json and plots/."""
        paths = [self.out / "trials.csv", self.out / "tuned.yaml", self.out / "tuning.json"]
        table, choices = self.trials(), self.choices()
        write_text(paths[0], table.to_csv(index=False))
        write_text(paths[1], self.tuned_yaml(choices))
        trials_s = float(table["wall_time_s"].sum()) if len(table) else 0.0
        before = json.loads(paths[2].read_text()) if paths[2].exists() else {}
        machinery_s = self.machinery_s + before.get("machinery_s", 0.0)
        write_text(paths[2], json.dumps({
            **self.protocol, "suite": self.suite, "rungs": self.rungs,
            "studies": choices, "command_wall_s": total_s,
            "commands_wall_s": total_s + before.get("commands_wall_s",
                                                    before.get("command_wall_s", 0.0)),
            "trials_cell_s": trials_s, "machinery_s": machinery_s,
            "machinery_share": machinery_s / trials_s if trials_s else None}, indent=1))
        for name, entry in choices.items():
            if entry.get("on_bound"):
                self.say(f"warning: {name}: the best candidate's {', '.join(entry['on_bound'])} "
                         "lies on its range's bound (tuning.json)")
        self.say(f"tuning machinery (sampler and storage): {self.machinery_s:.2f} s this "
                 f"command; the trials' cells: {trials_s:.1f} s in all")
        paths.append(plot_studies(self.studies, self.out / "plots"))
        return paths

    def trials(self):
        """One row per trial: method, study, number, state, defaults, parameters, seeds run,
        mean objective and its cells' wall time."""
        import pandas as pd

        records, rows = self.store.load_all(), []
        for name, study in self.studies.items():
            for t in study.get_trials(deepcopy=False):
                values = per_seed(t)
                cells = [spec.id for k in range(len(values))
                         for spec in self._cells(name, t, self.seeds[k])]
                rows.append({"method": self.specs[name].method, "study": name,
                             "trial": t.number, "state": t.state.name,
                             "defaults": bool(t.user_attrs.get("defaults")),
                             **{f"param_{k}": v for k, v in t.params.items()},
                             "seeds": len(values), "objective": _mean(values) if values else None,
                             "wall_time_s": sum(records.get(c, {}).get("wall_time_s") or 0.0
                                                for c in cells)})
        return pd.DataFrame(rows, columns=list(dict.fromkeys(
            ["method", "study", "trial", "state", "defaults",
             *(k for r in rows for k in r)])))

    def tuned_yaml(self, choices: dict) -> str:
        """A grid YAML: per method and evaluation stream, its study's choice."""
        import yaml

        from benchmarks.run import TRAIN_FLAGS

        tuned, lines = {}, []
        label = f"{self.suite or 'valid'} halving {self.args.budget}"
        for name, entry in choices.items():
            method = entry["method"]
            if entry["choice"] is None:
                lines.append(f"# {name}: no complete trial, left out")
                continue
            params = entry["best"]["params"] if entry["choice"] == "tuned" else {}
            if "difference" in entry:
                verdict = (f"{'tuned' if entry['choice'] == 'tuned' else 'defaults stand'}: "
                           f"the best candidate, trial {entry['best']['trial']}, "
                           f"{entry['difference']:+.2f} over the defaults, two standard "
                           f"errors {entry['two_se']:.2f} ({entry['seeds']} seeds)")
            else:
                verdict = ("defaults stand: no candidate finished" if entry["best"] is None
                           else "tuned: the defaults failed")
            lines.append(f"# {name}: {verdict}" + (f"; on a bound: {', '.join(entry['on_bound'])}"
                                                   if entry.get("on_bound") else ""))
            for stream in entry["evaluation_streams"]:
                tuned.setdefault(method, {})[stream] = {
                    "hparams": {k: v for k, v in params.items() if k != "lr"},
                    **({"lr": params["lr"]} if "lr" in params else {}), "tuning": label}
        methods = list(dict.fromkeys(entry["method"] for entry in choices.values()))
        where = ({"suite": self.suite} if self.suite else {"streams": list(dict.fromkeys(
            s for entry in choices.values() for s in entry["evaluation_streams"]))})
        config = {"methods": methods, **where, "seeds": TEST_SEEDS,
                  **{k: getattr(self.args, k) for k in TRAIN_FLAGS
                     if getattr(self.args, k) is not None and k != "lr"},
                  **({"lr": self.args.lr} if self.args.lr is not None else {}),
                  **({"set": self.fixed} if self.fixed else {}),
                  **({"plugins": self.args.plugin} if self.args.plugin else {}),
                  "tuned": tuned, "studies": studies.verdicts(choices)}
        command = "python -m benchmarks.tune" + (f" --suite {self.suite}" if self.suite else "")
        head = [f"# Written by {command}: the defaults and {self.args.budget} candidates per "
                f"study, successive halving over seeds {self.seeds} ({self.args.sampler} "
                f"sampler, seed {self.args.sampler_seed}); a candidate replaces the defaults "
                "only if it beats them by more than two standard errors (else: defaults, "
                "hparams {}).",
                "# Test them: python -m benchmarks.run --config THIS_FILE", *lines]
        return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=False)


def _items(mapping: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in mapping.items())


def plot_studies(studies: dict, folder: Path) -> Path:
    """Per study, every trial's per-seed values (Optuna's intermediate-values plot)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    from benchmarks.plots import slug

    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, study in studies.items():
            if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
                continue
            ax = ov.plot_intermediate_values(study)
            _retitle(ax, f"{name}: validation objective per seed, by trial")
            ax.set_xlabel("seed (position)")
            ax.figure.savefig(folder / f"{slug(name)}_seeds.png", dpi=110, bbox_inches="tight")
            plt.close(ax.figure)
    return folder


def _retitle(ax, title: str) -> None:
    """Replace Optuna's title (centred or left) by ``title``."""
    for loc in ("left", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(title, fontsize="medium")


if __name__ == "__main__":
    sys.exit(main())
