"""The CLI: run a grid of cells, store one record per cell, render the leaderboard.

    python -m benchmarks.run --methods finetune,replay                  # embedded stream
    python -m benchmarks.run --methods rebll --streams coco:B40-C10 --data-root /data/coco
    python -m benchmarks.run --config grid.yaml --workers 2             # options from a file
    python -m benchmarks.run --methods finetune,replay --suite imbacil-v1   # a named suite
    python -m benchmarks.run --list                                     # methods and streams

Results go to ``--out`` (default ``results/<name>``): ``records/<id>.json`` per cell,
``leaderboard.csv``/``.md``, ``per_seed.csv`` and ``plots/``. Running the same command again
skips done cells, retries failed ones and runs the rest. Every user error is one line on
stderr and exit status 2, before any work; a failed cell makes the exit status 1.

Everything a user can get wrong is checked before torch and Avalanche are imported (the
stream catalog and the method declarations need neither), so that every user error answers
at once; only what needs torch (an embedded stream's empty session, CUDA) or a cluster
(Ray) is checked after, still before any cell runs.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from benchmarks import studies
from benchmarks.backbones import HEAD_INITS
from benchmarks.runner.store import Store
from benchmarks.runner.version import cell_version, code_version, method_source

if TYPE_CHECKING:
    from benchmarks.runner.spec import RunSpec

DEFAULT_STREAM = "digits:B0-C2"
DEFAULT_SEEDS = "0,1,2"
RAY_TIMEOUT, RAY_RETRIES = 30.0, 3
# CLI flag -> RunSpec.train key; only the flags given override the stream's recipe.
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "optimizer", "memory", "device", "backbone",
               "pretrained", "image_size", "amp", "channels_last", "memory_labels",
               "reset_optimizer", "memory_selection", "head_init", "replay_batch")
TRAIN_KEYS = {"memory_selection": "selection"}  # flags named otherwise in the recipe

# Config keys that are on/off switches on the command line.
SWITCHES = ("channels_last", "download")

EPILOG = """\
streams: dataset:B<base>-C<inc>[?option=value&...], e.g. digits:B0-C2, coco:B40-C10,
  'voc:B0-C4?order=shuffled', 'digits:B0-C2?valid=0.1&eval=valid' (quote a name with
  ? or & in a shell; --list shows datasets, protocols and options). Options are sorted and
  defaults dropped: 'digits:B0-C2?ratio=10' is the stream digits:B0-C2.
resuming: a cell's id is a hash of its spec (method, stream, seed, overrides); each
  finished cell's record is written to OUT/records/ at once, so running the same command
  again skips done cells, retries failed ones and runs the rest, even after a kill.
  Records of other code are kept and their rows flagged stale: --rerun METHOD reruns them.
exit status: 0 all cells done; 1 some cell failed (recorded with its reason; the others
  ran); 2 bad input or a failed --download (one 'error:' line, no cell run);
  130 interrupted (finished cells kept, leaderboard written).
"""


class UsageError(Exception):
    """A command-line mistake: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise UsageError (one line, exit 2) instead of exiting."""

    def error(self, message):
        raise UsageError(message)


def _at_least(kind, minimum, strict=False):
    """An argparse type: a finite ``kind`` number >= ``minimum`` (> with ``strict``)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < minimum or (
                strict and value == minimum):
            noun = "an integer" if kind is int else "a finite number"
            raise argparse.ArgumentTypeError(
                f"expected {noun} {'>' if strict else '>='} {minimum}, got {text!r}")
        return value
    return parse


def _selection(text: str) -> str:
    """An argparse type: a memory selection with its options, canonical (torch-free)."""
    from strategies.options import canonical_selection

    try:
        return canonical_selection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _boolean(text: str) -> bool:
    """An argparse type: ``true`` or ``false``."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.run",
               description="Run methods x streams x seeds, store a record per cell, and "
                           "write a leaderboard with plots.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", help="comma-separated method names (see --list)")
    p.add_argument("--streams", help=f"comma-separated streams (default {DEFAULT_STREAM})")
    p.add_argument("--suite", metavar="NAME",
                   help="the evaluation streams of a named, versioned suite, e.g. imbacil-v1 "
                        "(instead of --streams; see --list)")
    p.add_argument("--seeds", help=f"comma-separated integer seeds (default {DEFAULT_SEEDS})")
    p.add_argument("--epochs", type=_at_least(int, 1), help="epochs per session")
    p.add_argument("--batch-size", type=_at_least(int, 1))
    p.add_argument("--lr", type=_at_least(float, 0.0, strict=True), help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"],
                   help="adam, or sgd with momentum 0.9 (default: the stream's recipe)")
    p.add_argument("--memory", type=_at_least(int, 0),
                   help="replay memory budget (per class or in total, as the recipe says)")
    p.add_argument("--memory-labels", choices=["own", "forward"],
                   help="labels of replayed exemplars: their own session's (default), or also "
                        "the ground truth of classes learned after them (KRT's code)")
    p.add_argument("--memory-selection", type=_selection, metavar="NAME[?OPTION=VALUE&...]",
                   help="how every replay method's memory is chosen: herding or random per "
                        "class, or prs / ocdm, class-balancing (options: prs?rho=0, "
                        "ocdm?rho=0&batch=10&divergence=kl_target&eps=1e-6; quote ? and &); "
                        "default: the stream's recipe, herding")
    p.add_argument("--replay-batch", choices=["concat", "balanced"],
                   help="how every replay method's batches mix memory and new data: concat "
                        "(memory joins the data, shuffled together; LT-CIL/FACIL, PyCIL) or "
                        "balanced (a batch of new data plus a batch of memory, Avalanche's "
                        "ReplayPlugin); default: the stream's recipe, concat")
    p.add_argument("--backbone", help="smallcnn, resnet32, resnet18, resnet50, resnet101 or "
                                      "timm:<model>, e.g. timm:tresnet_m (default: the "
                                      "stream's recipe)")
    p.add_argument("--head-init", choices=HEAD_INITS,
                   help="the classifier head's initialisation: linear (default: nn.Linear's) "
                        "or kaiming (PyCIL's: kaiming-uniform weight, zero bias)")
    p.add_argument("--pretrained", metavar="PATH|timm:MODEL.TAG",
                   help="backbone weights from a local file (a torchvision state dict, or a "
                        "checkpoint timm reads for timm:<model>), or timm's published "
                        "weights by name, e.g. timm:tresnet_m.miil_in21k (with --download "
                        "the first time)")
    p.add_argument("--image-size", type=_at_least(int, 8), help="input side in pixels")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="auto: cuda when available (default: the stream's recipe)")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"],
                   help="mixed-precision training (default off)")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="channels-last memory format for the model and image batches")
    p.add_argument("--reset-optimizer", type=_boolean, metavar="{true,false}",
                   help="a fresh optimizer state at each session (default: the stream's "
                        "recipe, true); false keeps e.g. Adam's moments across sessions")
    p.add_argument("--data-root", help="where real datasets live")
    p.add_argument("--download", action="store_true", default=None,
                   help="fetch the missing datasets into --data-root and named --pretrained "
                        "weights, once, before any cell runs (default: nothing is "
                        "downloaded; see docs/datasets.md)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="override a method hyperparameter (repeatable)")
    p.add_argument("--config", help="grid YAML with these options, plus per-method "
                                    "hyperparameter lists under 'grid'")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE",
                   help="a method file to load (repeatable)")
    p.add_argument("--workers", type=_at_least(int, 1), help="cells in parallel (default 1)")
    p.add_argument("--threads", type=_at_least(int, 1),
                   help="torch threads per cell (default: CPU cores / workers)")
    p.add_argument("--executor", choices=["local", "ray"], help="default local")
    p.add_argument("--ray-address", metavar="HOST:PORT",
                   help="an existing Ray cluster's head (implies --executor ray; default: a "
                        "local instance)")
    p.add_argument("--ray-timeout", type=_at_least(float, 1), metavar="SECONDS",
                   help=f"how long to wait for the Ray cluster (default {RAY_TIMEOUT:g})")
    p.add_argument("--ray-retries", type=_at_least(int, 0), metavar="N",
                   help="times a cell whose Ray worker or node died is run again (default "
                        f"{RAY_RETRIES}; a cell that raised is not)")
    p.add_argument("--out", help="results folder (default results/<name>)")
    p.add_argument("--name", help="grid name (default: the config's file name, or 'default')")
    p.add_argument("--baseline", metavar="METHOD[(K=V, ...)][[K=V, ...]]",
                   help="leaderboard differences are paired to this method, e.g. replay, "
                        "'replay(negatives=seen)' or 'replay[selection=herding]' (recorded "
                        "in the folder); default: the folder's recorded baseline, else replay "
                        "when in --methods, else the first of --methods")
    p.add_argument("--rerun", metavar="METHOD[,METHOD]",
                   help="rerun these methods' cells even where records are done")
    p.add_argument("--tensorboard", action="store_true",
                   help="log each cell's per-session metrics under OUT/tensorboard/<id>")
    p.add_argument("--list", action="store_true",
                   help="list methods, streams and suites, then exit")
    p.add_argument("--quiet", action="store_true",
                   help="print only errors and the final line of output paths")
    return p


@dataclass
class Plan:
    """A validated grid: what to run, where, and how."""

    specs: list[RunSpec]
    notes: list[str]  # said before the run: skipped pairs, warnings
    out: Path
    rerun: list[str]
    workers: int
    threads: Optional[int]
    executor: str
    ray_address: Optional[str]
    ray_retries: int
    tensorboard: bool
    quiet: bool
    baseline: Optional[str] = None
    studies: Optional[dict] = None  # tuning verdicts of a tuned.yaml (benchmarks/studies.py)


def main(argv=None, cell: Optional[Callable[..., dict]] = None) -> int:
    """Run the CLI; ``cell`` replaces :func:`benchmarks.cell.run_cell` (tests)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser().parse_args(argv)  # --help and flag errors before the heavy imports
    except UsageError as exc:
        return _usage_error(exc)
    from benchmarks import streams
    from benchmarks.download import DownloadError
    from benchmarks.runner.grid import GridError
    from benchmarks.runner.ray_executor import ClusterError
    from methods import MethodError, discover, load_plugin

    try:
        args, config = parse(argv)
        discover()  # the suite's methods first: a plugin may not take their names
        for plugin in args.plugin:
            load_plugin(plugin)
        if args.list:
            print(listing())
            return 0
        plan = make_plan(args, config)
        check_heavy(plan, args)
        download(plan, args)
    except (UsageError, GridError, MethodError, streams.StreamError, ClusterError,
            DownloadError) as exc:
        return _usage_error(exc)
    return execute(plan, cell)


def _usage_error(exc: Exception) -> int:
    print("error: " + " ".join(str(exc).split()), file=sys.stderr)
    return 2


def parse(argv: list[str], make_parser: Callable[[], argparse.ArgumentParser] = None
          ) -> tuple[argparse.Namespace, dict]:
    """The flags, with a ``--config`` file's options under them (the command line wins);
    ``make_parser`` builds the parser (default :func:`parser`)."""
    from benchmarks.runner.grid import load_config

    make_parser = make_parser or parser
    args = make_parser().parse_args(argv)
    if not args.config:
        return args, {}
    config = load_config(args.config)
    return make_parser().parse_args(_config_argv(config) + argv), config


def _config_argv(config: dict) -> list[str]:
    """A config's options (but ``grid``) as command-line tokens."""
    from benchmarks.runner.grid import split_list

    def text(value):
        return value if isinstance(value, str) else json.dumps(value)

    tokens = []
    for key, value in config.items():
        if key == "set":
            tokens += [t for method, pairs in value.items() for k, v in pairs.items()
                       for t in ("--set", f"{method}.{k}={text(v)}")]
        elif key == "plugins":
            tokens += [t for plugin in split_list(value) for t in ("--plugin", plugin)]
        elif key in SWITCHES:  # given when true
            tokens += [f"--{key.replace('_', '-')}"] if value else []
        elif key not in ("grid", "tuned", "studies") and value is not None:
            value = ",".join(map(str, value)) if isinstance(value, list) else text(value)
            tokens += [f"--{key.replace('_', '-')}", value]
    return tokens


def make_plan(args: argparse.Namespace, config: dict) -> Plan:
    """Validate everything a user can get wrong (creating only the results folder, to check
    that it is writable)."""
    from benchmarks import backbones, streams
    from benchmarks.runner.grid import expand, parse_seeds, parse_sets, split_list
    from methods import discover

    if args.backbone is not None:
        try:
            backbones.check(args.backbone)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if not args.methods:
        known = ", ".join(sorted(discover())) or "none"
        raise UsageError(f"--methods is required, e.g. --methods finetune,replay; known: {known}")
    methods = split_list(args.methods)
    sets = parse_sets(args.set)
    suite = chosen_suite(args)
    names = suite.streams() if suite else split_list(args.streams or DEFAULT_STREAM)
    grid = expand(methods, names,
                  parse_seeds(DEFAULT_SEEDS if args.seeds is None else args.seeds), sets=sets,
                  grid=config.get("grid"), data_root=args.data_root,
                  train={TRAIN_KEYS.get(k, k): getattr(args, k) for k in TRAIN_FLAGS
                         if getattr(args, k) is not None},
                  plugins=tuple(str(Path(plugin).resolve()) for plugin in args.plugin),
                  tuned=config.get("tuned"), suite=suite.label if suite else "")
    if args.pretrained:
        used = {backbone for backbone, _ in _backbones(grid.specs)}
        try:
            backbones.check_pretrained(args.pretrained, used, bool(args.download))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    _check_baseline(args.baseline, methods)
    _check_sets(sets, methods, config)
    if config.get("studies") is not None:
        try:
            studies.check(config["studies"])
        except ValueError as exc:
            raise UsageError(f"{args.config}: {exc}") from None
    rerun = split_list(args.rerun or "")
    if set(rerun) - set(methods):
        raise UsageError(f"--rerun names {', '.join(sorted(set(rerun) - set(methods)))}, "
                         f"not in --methods; accepted: {', '.join(methods)}")
    if not grid.specs:
        raise UsageError("nothing to run: " + "; ".join(grid.skipped))
    notes = list(grid.skipped)
    for name in dict.fromkeys(spec.stream for spec in grid.specs):
        streams.check(name, args.data_root, args.image_size, args.batch_size,
                      bool(args.download))
        if streams.parse(name)[0].published_pretrained and not args.pretrained:
            notes.append(f"warning: {name} trains its backbone from scratch; its published "
                         "numbers start from ImageNet-pretrained weights: pass --pretrained "
                         "PATH (a local weights file) or --pretrained timm:<model>.<tag> "
                         "with --download")
    executor = args.executor or ("ray" if args.ray_address else "local")
    _check_ray_flags(args, executor)
    name = args.name or (Path(args.config).stem if args.config else "default")
    out = Path(args.out or Path("results") / name)
    check_writable(out)
    return Plan(grid.specs, notes, out, rerun, args.workers or 1, args.threads, executor,
                args.ray_address, RAY_RETRIES if args.ray_retries is None else args.ray_retries,
                args.tensorboard, args.quiet, args.baseline, config.get("studies"))


def _check_baseline(name: Optional[str], methods: list[str]) -> None:
    """A --baseline name is readable and its method is in the grid."""
    from benchmarks import baseline

    if not name:
        return
    try:
        method = baseline.parse(name).method
    except baseline.BaselineError as exc:
        raise UsageError(str(exc)) from None
    if method not in methods:
        raise UsageError(f"--baseline {name}: {method} is not in --methods; accepted: "
                         + ", ".join(methods))


def _check_sets(sets: dict, methods: list[str], config: dict) -> None:
    """A --set for a method outside the grid would be ignored: refused (a config file's
    ``set`` may hold methods its grid leaves out)."""
    outside = sorted(set(sets) - set(methods) - set(config.get("set") or {}))
    if outside:
        raise UsageError(f"--set names {', '.join(outside)}, not in --methods, so it would be "
                         f"ignored; accepted: {', '.join(methods)}")


def chosen_suite(args: argparse.Namespace):
    """The suite ``--suite`` names (None without one); with ``--streams`` too, a UsageError."""
    from benchmarks import suites

    if not args.suite:
        return None
    if args.streams:
        raise UsageError("--suite and --streams exclude each other (a suite fixes its "
                         "streams); give one of them")
    return suites.load(args.suite)


def check_heavy(plan: Plan, args: argparse.Namespace) -> None:
    """What needs torch or a cluster: embedded streams without an empty session, a CUDA
    device when asked for, a timm model the installed timm has, and a Ray cluster that can
    run the cells (last: it asks it)."""
    from benchmarks import backbones, streams

    for name in dict.fromkeys(spec.stream for spec in plan.specs):
        streams.check_sessions(name, args.data_root, args.image_size)
    if args.backbone and args.backbone.startswith(backbones.TIMM):
        from benchmarks import models

        try:
            models.check_backbone(args.backbone)
        except ValueError as exc:
            raise UsageError(f"argument --backbone: {exc}") from None
    # Named weights not downloaded yet are checked once fetched (download).
    if args.pretrained and backbones.weights_file(args.pretrained).is_file():
        _check_pretrained(plan, args.pretrained)
    if plan.executor == "local" and args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device here; accepted: auto, cpu")
    if plan.executor == "ray":
        from benchmarks.runner.ray_executor import check_fits, cluster_nodes

        check_fits(plan.specs, cluster_nodes(args.ray_address, args.ray_timeout or RAY_TIMEOUT),
                   plan.workers, plan.threads, args.ray_address)


def download(plan: Plan, args: argparse.Namespace) -> None:
    """With --download: fetch the datasets and named weights the grid needs and lacks, once,
    here in the driver, after every check and before any cell (benchmarks/download.py);
    weights fetched now are then checked as check_heavy checks a file."""
    if args.download:
        from benchmarks.backbones import weights_file
        from benchmarks.download import fetch

        fresh = args.pretrained and not weights_file(args.pretrained).is_file()
        fetch(dict.fromkeys(spec.stream for spec in plan.specs), args.data_root,
              args.pretrained, plan.quiet)
        if fresh:
            _check_pretrained(plan, args.pretrained)


def _backbones(specs: list[RunSpec]) -> set[tuple[str, int]]:
    """The (backbone, input channels) pairs of the cells."""
    from benchmarks import streams

    pairs = set()
    for spec in specs:
        dataset = streams.parse(spec.stream)[0]
        pairs.add((spec.train.get("backbone", dataset.recipe["backbone"]), dataset.channels))
    return pairs


def _check_pretrained(plan: Plan, path: str) -> None:
    """The --pretrained file loads into every backbone of the grid, as a cell will load it."""
    from benchmarks import models

    for backbone, channels in sorted(_backbones(plan.specs)):
        try:
            models.build(backbone, 1, channels, path)
        except ValueError as exc:
            raise UsageError(f"--pretrained: {exc}") from None


def _check_ray_flags(args: argparse.Namespace, executor: str) -> None:
    """The --ray-* flags apply only with --executor ray, which needs Ray installed."""
    given = [f"--ray-{flag}" for flag in ("address", "timeout", "retries")
             if getattr(args, f"ray_{flag}") is not None]
    if executor != "ray" and given:
        raise UsageError(f"{', '.join(given)} only apply with --executor ray")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--executor ray needs Ray: pip install 'ray>=2.9'; or use "
                         "--executor local")


def check_writable(out: Path) -> None:
    """Raise UsageError unless ``out`` is, or can be created as, a folder in which a file can
    be written: it is created and a probe file written and removed (folders this check
    created are removed again when it fails)."""
    created = [parent for parent in (out, *out.parents) if not parent.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe"):
            pass
    except OSError as exc:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise UsageError(f"--out {out} is not writable: {exc.strerror or exc}")


def execute(plan: Plan, cell: Optional[Callable[..., dict]] = None) -> int:
    """Run the pending cells, write each record as it arrives, render the report (also when
    interrupted, from the cells that finished)."""
    from benchmarks import baseline as baselines
    from benchmarks.report import render

    def say(line):
        if not plan.quiet:
            print(line, file=sys.stderr)

    for line in plan.notes:
        say(line)
    methods = list(dict.fromkeys(spec.method for spec in plan.specs))
    baseline = baselines.choose(plan.out, plan.baseline, methods)
    recorded = baselines.read(plan.out)
    if not plan.baseline and len(methods) > 1 and (recorded or baseline != baselines.DEFAULT):
        say(f"paired differences are to {baseline}, "
            + (f"recorded in {plan.out / baselines.FILE}" if recorded else
               "the first of --methods") + " (--baseline changes it)")
    store = Store(plan.out)
    todo = store.pending(plan.specs, plan.rerun)
    for path in store.set_aside:
        say(f"warning: {path.with_suffix('')} could not be read; set aside as {path.name}, "
            "its cell will run again")
    say(f"{len(plan.specs)} cells: {len(plan.specs) - len(todo)} done already, "
        f"{len(todo)} to run; results in {plan.out}")
    version = code_version()
    stale = _stale_methods(store, plan.specs, todo, version)
    if stale:
        say("done cells of " + ", ".join(stale) + " come from other code (the suite's or "
            "their plugin file's): their rows are flagged stale; rerun them with --rerun "
            + ",".join(stale))
    plan.out.mkdir(parents=True, exist_ok=True)
    if plan.studies:
        studies.save(plan.out, plan.studies)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None  # as Ctrl-C
    try:
        if todo:
            run_cells(plan, todo, store, version, cell)
    except KeyboardInterrupt:
        paths = render(plan.out, version, baseline)
        print(f"interrupted: finished cells are saved in {plan.out} and in its leaderboard; "
              "run the same command to resume", file=sys.stderr)
        print(" ".join(str(path) for path in paths))
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    paths = render(plan.out, version, baseline)
    stored = store.load_all()
    if len(stored) > len(plan.specs):
        say(f"the report shows every record of {plan.out}: {len(stored)} cells, "
            f"{len(plan.specs)} of them this grid's")
    failed = [stored[spec.id] for spec in plan.specs if stored[spec.id]["status"] != "done"]
    if failed:
        print(f"{len(failed)} of {len(plan.specs)} cells failed (tracebacks in "
              f"{store.records}):", file=sys.stderr)
        for record in failed:
            spec = record["spec"]
            print(f"  {spec['method']} on {spec['stream']} seed {spec['seed']} "
                  f"[{record['id']}]: {record['error']}", file=sys.stderr)
    print(" ".join(str(path) for path in paths))
    return 1 if failed else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_cells(plan: Plan, todo: list[RunSpec], store: Store, version: str,
               cell: Optional[Callable[..., dict]]) -> None:
    """Run ``todo`` on the plan's executor; stamp, store (and log) each record on arrival."""
    from benchmarks.progress import Progress
    from benchmarks.report import write_tensorboard
    from benchmarks.runner.executors import run_local
    from benchmarks.runner.ray_executor import run_ray

    if plan.executor == "ray":
        records = run_ray(todo, workers=plan.workers, address=plan.ray_address, cell=cell,
                          threads=plan.threads, retries=plan.ray_retries, version=version)
    else:
        records = run_local(todo, workers=plan.workers, cell=cell, threads=plan.threads,
                            progress=not plan.quiet)
    with Progress(len(todo), "cells", "cell", enabled=not plan.quiet) as bar:
        for record in records:
            record["method_source"] = method_source(record["spec"]["method"])
            # The Ray executor's records carry the version computed on their node.
            record.setdefault("code_version", cell_version(version, record["method_source"]))
            store.write(record)
            if plan.tensorboard:
                write_tensorboard(record, plan.out / "tensorboard")
            spec = record["spec"]
            bar.update(f"{spec['method']} {spec['stream']} seed {spec['seed']}: "
                       f"{record['status']}")


def _stale_methods(store: Store, specs: list[RunSpec], todo: list[RunSpec],
                   version: str) -> list[str]:
    """Methods with done cells (kept, not rerun) whose code version is not the current one."""
    records, todo_ids = store.load_all(), {spec.id for spec in todo}
    return sorted({spec.method for spec in specs if spec.id not in todo_ids
                   and records[spec.id].get("code_version")
                   != cell_version(version, method_source(spec.method))})


def listing() -> str:
    """The registered methods (label modes, defaults), datasets (protocols, options) and
    suites (streams)."""
    from benchmarks import streams, suites
    from methods import discover

    lines = ["methods:"]
    for name, method in sorted(discover().items()):
        lines.append(f"  {name}  [{'/'.join(sorted(method.label_modes))}-label]"
                     + (f"  {method.summary}" if method.summary else "")
                     + (f"  ({method.paper})" if method.paper else ""))
        if method.defaults:
            lines.append("      defaults: " + ", ".join(f"{k}={v!r}"
                                                        for k, v in method.defaults.items()))
        accepted = {**{k: "|".join(map(str, v)) for k, v in method.choices.items()},
                    **{k: _range(*v) for k, v in method.ranges.items()}}
        if accepted:
            lines.append("      accepted: " + ", ".join(f"{k} {v}"
                                                        for k, v in accepted.items()))
        lines += [f"      rule: {rule}" for _, rule, _ in method.constraints]
        lines.append("      tuned (benchmarks.tune): " + ", ".join(
            [*(f"{k} {_space(entry)}" for k, entry in method.space.items()),
             "lr log-uniform around the stream recipe's"]))
    lines.append("streams (dataset:B<base>-C<inc>[?option=value&...]; dataset:B<all classes> is "
                 "one session):")
    for name, dataset in sorted(streams.datasets().items()):
        offline = f"B{dataset.num_classes(dataset.options)} (one session)"
        lines.append(f"  {name}  [{dataset.label_mode}-label]  {dataset.description}")
        lines.append(f"      protocols: {', '.join([*dataset.protocols, offline])}; options: "
                     + ", ".join(f"{k}={v!r}" for k, v in dataset.options.items()))
    return "\n".join(lines + suites.listing())


def _range(low, high) -> str:
    """A declared range as text: ``[0, 1]``, ``>= 0``."""
    return (f"[{low}, {high}]" if low is not None and high is not None else
            f">= {low}" if low is not None else f"<= {high}" if high is not None else "any")


def _space(entry: tuple) -> str:
    """A search-space entry as text: ``log-uniform [0.1, 10]``, ``one of a|b``."""
    if entry[0] == "choice":
        return "one of " + "|".join(map(str, entry[1]))
    kind = {"log": "log-uniform", "float": "uniform", "int": "integers"}[entry[0]]
    return f"{kind} [{entry[1]}, {entry[2]}]"


if __name__ == "__main__":
    sys.exit(main())
