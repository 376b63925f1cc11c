"""One cell: a method on a stream with one seed, trained and evaluated session by session.

``run_cell(spec) -> record`` seeds everything, builds the stream, the model and the method's
strategy, trains on each session and evaluates on the seen classes after it, and returns a
JSON-serialisable record. It never writes files and never raises for a failing cell: the
record says ``status: failed`` with the reason.
"""
from __future__ import annotations

import hashlib
import platform
import random
import time
import traceback
from typing import Optional

import avalanche
import numpy as np
import torch

import methods
from benchmarks import diagnostics, models, streams
from benchmarks.backbones import is_named, weights_file
from benchmarks.metrics import ScoreCollector, per_class_on_subsets, summarize
from benchmarks.progress import Progress
from benchmarks.runner.spec import RunSpec, new_record

# Recipe keys every stream may leave out.
TRAIN_DEFAULTS = {"device": "auto", "pretrained": None, "eval_batch_size": 256, "amp": "off",
                  "channels_last": False, "reset_optimizer": True, "memory_labels": "own",
                  "head_init": models.HEAD_INITS[0]}


def resolve_train(recipe: dict, overrides: dict) -> dict:
    """The stream's recipe with the spec's overrides; unknown keys are an error."""
    base = {**TRAIN_DEFAULTS, **recipe}
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ValueError(f"unknown training option(s) {', '.join(unknown)}; accepted: "
                         + ", ".join(sorted(base)))
    return {**base, **overrides}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(benchmark, info, train: dict, seed: int) -> torch.nn.Module:
    """The recipe's backbone and head for the stream, initialised after seeding ``seed``
    (input channels are read from the first training image, before seeding)."""
    in_channels = benchmark.train_stream[0].dataset[0][0].shape[0]
    seed_everything(seed)
    return models.build(train["backbone"], info.num_classes, in_channels, train["pretrained"],
                        train["head_init"])


def weights_of(pretrained: Optional[str]) -> Optional[dict]:
    """The pretrained weights a cell starts from: file and content hash, and the name of
    named weights (None: from scratch)."""
    if not pretrained:
        return None
    path = weights_file(pretrained)
    return {"path": str(path.resolve()),
            "sha1": hashlib.sha1(path.read_bytes()).hexdigest()[:12],
            **({"name": pretrained} if is_named(pretrained) else {})}


def environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"python": platform.python_version(), "torch": torch.__version__,
            "avalanche": avalanche.__version__, "device": f"{device} ({name or 'cpu'})",
            "threads": torch.get_num_threads()}


def _train_and_evaluate(spec: RunSpec, record: dict, progress: bool) -> None:
    for path in spec.plugins:
        methods.load_plugin(path)
    method = methods.get(spec.method)
    hparams = methods.resolve_hparams(spec.method, spec.hparams)
    built = streams.build(spec.stream, spec.data_root, spec.train.get("image_size"))
    benchmark, info = built
    methods.check_label_mode(spec.method, info.label_mode)
    train = resolve_train(info.recipe, spec.train)
    device = resolve_device(train["device"])
    record.update(env=environment(device), hparams=hparams, train=train,
                  pretrained=weights_of(train["pretrained"]),
                  stream={k: getattr(info, k) for k in
                          ("name", "label_mode", "class_names", "sessions", "class_counts")})
    model = build_model(benchmark, info, train, spec.seed)
    collector = ScoreCollector()
    ctx = methods.MethodContext(model, info, hparams, train, benchmark, device, [collector],
                                spec.seed)
    strategy = method.build(ctx)
    sessions = list(zip(benchmark.train_stream, benchmark.test_stream))
    bar = Progress(len(sessions), f"{spec.method} {spec.stream} seed {spec.seed}", "session",
                   enabled=progress, leave=False)
    test_sets = []  # (dataset indices, n_seen) of each session's test set
    for train_exp, test_exp in sessions:
        start = time.perf_counter()
        strategy.train(train_exp)
        trained = time.perf_counter()
        memory_labels = diagnostics.memory_label_rates(strategy, built.train_labels)
        measured = time.perf_counter()
        strategy.eval([test_exp])
        metrics = dict(collector.last)
        per_class = metrics.pop("per_class")
        test_sets.append((collector.scores[2], strategy.n_seen))
        record["sessions"].append({
            "session": strategy.session, "n_seen": strategy.n_seen,
            "memory": diagnostics.memory_held(strategy), "memory_labels": memory_labels,
            "train_time_s": trained - start, "eval_time_s": time.perf_counter() - measured,
            "train_loss": strategy.epoch_losses, "notes": strategy.notes, "metrics": metrics,
            "per_class": per_class})
        bar.update()
    bar.close()
    logits, targets, index = collector.scores
    final_on_earlier = per_class_on_subsets(logits, targets, index, test_sets[:-1],
                                            info.label_mode, test_sets[-1][1])
    record["summary"] = summarize([dict(s["metrics"], per_class=s["per_class"])
                                   for s in record["sessions"]], info.label_mode,
                                  final_on_earlier)
    record["summary"].update(diagnostics.last_memory(record["sessions"]))


def run_cell(spec: RunSpec, progress: bool = False) -> dict:
    """Train and evaluate one cell; return its record (status ``done`` or ``failed``)."""
    start = time.perf_counter()
    record = new_record(spec)
    try:
        _train_and_evaluate(spec, record, progress)
        record["status"] = "done"
    except Exception as exc:  # a failing cell is recorded, and the grid goes on
        record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        record["traceback"] = traceback.format_exc()
    record["wall_time_s"] = time.perf_counter() - start
    return record
