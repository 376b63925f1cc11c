"""Equal tuning for every method: the same budget of trials on the validation split.

    python -m benchmarks.tune --methods rebll,gradreweight,replay --streams digits:B0-C2 --budget 16
    python -m benchmarks.run --config results/tune-default/tuned.yaml      # then test

For every method and stream, ``--budget`` trials (the same number for every method) sample
the method's declared search space (``@register(..., space=...)``) and the training
learning rate (log-uniform over the recipe's ÷10 to ×10, for every method, so the baselines
get the same budget as the new ones). A trial is a cell (one per ``--seeds`` seed) of the
grid store, run through the grid's executors, on the stream's validation split: a stream
without a ``valid`` option gets ``valid=0.1&eval=valid``, ``eval=valid`` is added to one
with it, and a stream that asks for ``eval=test`` is refused. The objective is the stream's
headline (average mAP or accuracy over sessions) on validation, averaged over the seeds.

Sampler: Optuna's TPE (``--sampler random`` for random search; TPE starts with half the
budget at random, at most 10 trials, see :func:`startup_trials`), seeded per trial from
``--sampler-seed`` and the trial's number, so that a study is reproducible and a resumed
study samples what an uninterrupted one would. The studies live in ``OUT/study.journal``
(Optuna's journal storage): running the same command again resumes, re-evaluating a trial
a kill left unfinished (its done cells are read from the store) and stopping at the budget.
Each round asks one trial of every unfinished study, so the cells of a round run in
parallel with ``--workers`` or ``--executor ray``.

Output in ``--out`` (default ``results/tune-<name>``): ``trials.csv`` (one row per trial:
method, stream, trial, state, every parameter, the objective, the cell ids, wall time),
``tuned.yaml`` (a grid YAML for ``benchmarks.run --config``: per method and stream the best
trial's values, on the stream without its validation options, 5 test seeds),
``tuning.json`` (the time of the trials and of the tuning machinery) and ``plots/`` (per
study, the objective by trial and, with two or more parameters, their importances).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from benchmarks.run import (UsageError, _usage_error, check_heavy, download, make_plan, parse,
                            parser as run_parser)
from benchmarks.runner.store import Store, write_text

SAMPLERS = ("tpe", "random")
LR_SPAN = 10.0  # the learning rate is searched over the recipe's lr / 10 to lr * 10
TEST_SEEDS = [0, 1, 2, 3, 4]
NOT_FOR_TUNING = ("rerun", "baseline", "list", "tensorboard")
EPILOG = """\
every method and stream gets --budget trials on the validation split (valid=0.1&eval=valid
is added to a stream name without a valid option; eval=test is refused); the same command
again resumes the studies (OUT/study.journal). Then test the chosen configurations:
  python -m benchmarks.run --config OUT/tuned.yaml
exit status: 0 every study at its budget; 1 some trial failed (counted, recorded);
  2 bad input or a failed --download (one 'error:' line, nothing run); 130 interrupted
  (resume with the same command).
"""


def parser() -> argparse.ArgumentParser:
    """The run CLI's flags (training, execution, output) plus the tuning ones."""
    p = run_parser()
    p.prog = "python -m benchmarks.tune"
    p.description = ("Tune every method with the same budget of trials on the validation "
                     "split and write tuned.yaml for benchmarks.run --config.")
    p.epilog = EPILOG
    p.add_argument("--budget", type=int, default=None,
                   help="trials per method and stream (the same for every method; default 8)")
    p.add_argument("--sampler", default="tpe",
                   help=f"{' or '.join(SAMPLERS)} (default tpe: Optuna's TPE)")
    p.add_argument("--sampler-seed", type=int, default=0,
                   help="seeds the sampler (with each trial's number; default 0)")
    return p


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


def main(argv=None, cell: Optional[Callable[..., dict]] = None) -> int:
    """Run the tuning CLI; ``cell`` replaces the real cell (tests)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from benchmarks import streams
    from benchmarks.download import DownloadError
    from benchmarks.runner.grid import GridError
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
        args.budget = 8 if args.budget is None else args.budget
        if args.budget < 1:
            raise UsageError(f"--budget must be an integer >= 1, got {args.budget}")
        if args.sampler not in SAMPLERS:
            raise UsageError(f"--sampler {args.sampler!r} is unknown; accepted: "
                             + ", ".join(SAMPLERS))
        names = (args.streams or "digits:B0-C2").split(",")
        args.streams = ",".join(validation_stream(n.strip()) for n in names if n.strip())
        args.seeds = args.seeds if args.seeds is not None else "0"
        args.name = args.name or "default"
        args.out = args.out or str(Path("results") / f"tune-{args.name}")
        plan = make_plan(args, config)
        check_heavy(plan, args)
        download(plan, args)
    except (UsageError, GridError, MethodError, streams.StreamError, ClusterError,
            DownloadError) as exc:
        return _usage_error(exc)
    return Tuner(args, plan, cell).run()


class Tuner:
    """The studies of one tuning command, run in rounds of one trial per unfinished study."""

    def __init__(self, args: argparse.Namespace, plan, cell):
        import optuna

        from benchmarks.runner.grid import parse_sets
        from benchmarks.runner.version import code_version

        self.args, self.plan, self.cell = args, plan, cell
        self.out, self.store, self.version = Path(plan.out), Store(plan.out), code_version()
        self.fixed = parse_sets(args.set)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(self.out / "study.journal")))
        self.pairs = list(dict.fromkeys((s.method, s.stream) for s in plan.specs))
        self.studies = {pair: optuna.create_study(
            study_name=f"{pair[0]}@{pair[1]}", storage=self.storage, direction="maximize",
            load_if_exists=True) for pair in self.pairs}
        self.machinery_s = 0.0

    def say(self, line: str) -> None:
        if not self.plan.quiet:
            print(line, file=sys.stderr)

    def run(self) -> int:
        from benchmarks.run import run_cells

        self.say(f"tuning {len(self.pairs)} method x stream pairs, {self.args.budget} trials "
                 f"each, on the validation split; studies in {self.out / 'study.journal'}")
        started = time.perf_counter()
        try:
            while True:
                tick = time.perf_counter()
                trials = [self._next_trial(pair) for pair in self.pairs]
                trials = [t for t in trials if t is not None]
                self.machinery_s += time.perf_counter() - tick
                if not trials:
                    break
                specs = [spec for _, _, cells in trials for spec in cells]
                todo = self.store.pending(specs)
                if todo:
                    run_cells(self.plan, todo, self.store, self.version, self.cell)
                tick = time.perf_counter()
                for study, number, cells in trials:
                    self._tell(study, number, cells)
                self.machinery_s += time.perf_counter() - tick
        except KeyboardInterrupt:
            print(f"interrupted: finished trials are kept in {self.out}; run the same command "
                  "to resume", file=sys.stderr)
            return 130
        paths = self.write(time.perf_counter() - started)
        print(" ".join(str(path) for path in paths))
        failed = sum(t.state.name == "FAIL" for s in self.studies.values()
                     for t in s.get_trials(deepcopy=False))
        if failed:
            print(f"{failed} trials failed (their cells' errors are in {self.store.records})",
                  file=sys.stderr)
        return 1 if failed else 0

    def _next_trial(self, pair):
        """``(study, trial number, cells)`` of the study's next trial: one a kill left
        running, else a new one; None when the study is at its budget."""
        import optuna
        from optuna.trial import TrialState

        study = self.studies[pair]
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if running:
            return study, running[0].number, self._cells(pair, running[0].params)
        if len(trials) >= self.args.budget:
            return None
        space = search_space(*pair, self.fixed.get(pair[0], {}), self.args.lr is not None)
        seed = self.args.sampler_seed * 100_003 + len(trials)
        study.sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(
            self.args.budget)) if self.args.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=seed))
        trial = study.ask(space)
        cells = self._cells(pair, trial.params)
        trial.set_user_attr("cells", [spec.id for spec in cells])
        return study, trial.number, cells

    def _cells(self, pair, params: dict):
        from benchmarks.runner.grid import expand, parse_seeds

        method, stream = pair
        hparams = {k: v for k, v in params.items() if k != "lr"}
        train = dict(self.plan.specs[0].train)
        if "lr" in params:
            train["lr"] = params["lr"]
        grid = expand([method], [stream], parse_seeds(self.args.seeds),
                      sets={method: {**self.fixed.get(method, {}), **hparams}}, train=train,
                      data_root=self.args.data_root, plugins=self.plan.specs[0].plugins)
        return grid.specs

    def _tell(self, study, number: int, cells) -> None:
        """Tell the trial's objective, the mean headline of its cells (FAIL if one failed)."""
        from optuna.trial import TrialState

        records = self.store.load_all()
        done = [records[spec.id] for spec in cells if spec.id in records]
        if len(done) < len(cells) or any(r["status"] != "done" for r in done):
            study.tell(number, state=TrialState.FAIL)
            return
        values = [headline(r) for r in done]
        study.tell(number, sum(values) / len(values))

    def write(self, total_s: float) -> list[Path]:
        """trials.csv, tuned.yaml, tuning.json and plots/."""
        paths = [self.out / "trials.csv", self.out / "tuned.yaml", self.out / "tuning.json"]
        table = self.trials()
        write_text(paths[0], table.to_csv(index=False))
        write_text(paths[1], self.tuned_yaml())
        trials_s = float(table["wall_time_s"].sum()) if len(table) else 0.0
        write_text(paths[2], json.dumps({
            "budget": self.args.budget, "sampler": self.args.sampler, "seeds": self.args.seeds,
            "command_wall_s": total_s, "trials_cell_s": trials_s,
            "machinery_s": self.machinery_s,
            "machinery_share": self.machinery_s / trials_s if trials_s else None}, indent=1))
        self.say(f"tuning machinery (sampler and storage): {self.machinery_s:.2f} s this "
                 f"command; the trials' cells: {trials_s:.1f} s in all")
        paths.append(plot_studies(self.studies, self.out / "plots"))
        return paths

    def trials(self):
        """One row per trial: method, stream, number, state, parameters, objective, the
        cell ids and their wall time."""
        import pandas as pd

        records, rows = self.store.load_all(), []
        for (method, stream), study in self.studies.items():
            for t in study.get_trials(deepcopy=False):
                cells = t.user_attrs.get("cells", [])
                rows.append({"method": method, "stream": stream, "trial": t.number,
                             "state": t.state.name,
                             **{f"param_{k}": v for k, v in t.params.items()},
                             "objective": t.value, "cells": " ".join(cells),
                             "wall_time_s": sum(records.get(c, {}).get("wall_time_s") or 0.0
                                                for c in cells)})
        return pd.DataFrame(rows, columns=list(dict.fromkeys(
            ["method", "stream", "trial", "state", *(k for r in rows for k in r)])))

    def tuned_yaml(self) -> str:
        """A grid YAML with, per method and test stream, the best trial's values."""
        import yaml

        from benchmarks.run import TRAIN_FLAGS

        tuned, lines = {}, []
        label = f"valid budget {self.args.budget}"
        for (method, stream), study in self.studies.items():
            complete = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
            if not complete:
                lines.append(f"# {method} on {stream}: no complete trial, left out")
                continue
            best = max(complete, key=lambda t: (t.value, -t.number))
            entry = {"hparams": {k: v for k, v in best.params.items() if k != "lr"},
                     "tuning": label}
            if "lr" in best.params:
                entry["lr"] = best.params["lr"]
            tuned.setdefault(method, {})[test_stream(stream)] = entry
            lines.append(f"# {method} on {stream}: trial {best.number} of {len(complete)} "
                         f"complete, valid objective {best.value:.3f}")
        methods = list(dict.fromkeys(m for m, _ in self.pairs))
        config = {"methods": methods,
                  "streams": list(dict.fromkeys(test_stream(s) for _, s in self.pairs)),
                  "seeds": TEST_SEEDS,
                  **{k: getattr(self.args, k) for k in TRAIN_FLAGS
                     if getattr(self.args, k) is not None and k != "lr"},
                  **({"set": self.fixed} if self.fixed else {}),
                  **({"plugins": self.args.plugin} if self.args.plugin else {}),
                  "tuned": tuned}
        head = [f"# Written by python -m benchmarks.tune: {self.args.budget} trials per method "
                f"and stream on the validation split ({self.args.sampler} sampler, seeds "
                f"{self.args.seeds}); objective: the average headline metric over sessions.",
                "# Test them: python -m benchmarks.run --config THIS_FILE", *lines]
        return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=False)


def startup_trials(budget: int) -> int:
    """TPE's random start: half the budget, at least 2 and at most Optuna's default 10 (with
    Optuna's default alone, a budget of 8 to 12 would be random search)."""
    return min(10, max(2, budget // 2))


def headline(record: dict) -> float:
    """A done record's average headline over sessions (mAP or accuracy)."""
    metric = {"multi": "avg_mAP", "single": "avg_acc"}[record["stream"]["label_mode"]]
    return float(record["summary"][metric])


def plot_studies(studies: dict, folder: Path) -> Path:
    """Per study: the objective by trial and, with two or more parameters, their importance
    (Optuna's matplotlib visualisations)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    from benchmarks.plots import slug

    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for (method, stream), study in studies.items():
            complete = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
            if not complete:
                continue
            name = slug(f"{method}_{stream}")
            ax = ov.plot_optimization_history(study)
            _retitle(ax, f"{method} on {stream}: valid objective by trial")
            ax.figure.savefig(folder / f"{name}_history.png", dpi=110, bbox_inches="tight")
            plt.close(ax.figure)
            if len(complete) > 1 and len({k for t in complete for k in t.params}) > 1:
                ax = ov.plot_param_importances(study)
                _retitle(ax, f"{method} on {stream}: parameter importances")
                ax.figure.savefig(folder / f"{name}_importance.png", dpi=110,
                                  bbox_inches="tight")
                plt.close(ax.figure)
    return folder


def _retitle(ax, title: str) -> None:
    """Replace Optuna's title (centred or left) by ``title``."""
    for loc in ("left", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(title, fontsize="medium")


if __name__ == "__main__":
    sys.exit(main())
