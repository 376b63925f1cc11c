"""Training-loop figures: the suite against a hand-written PyTorch loop, and each method's
cost per training sample against fine-tuning.

Both compare runs interleaved in one process (A, B, B, A, ...) and report median ratios,
because a shared machine drifts more between minutes than between neighbouring runs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from avalanche.core import SupervisedPlugin

import methods
from benchmarks import streams
from benchmarks.cell import build_model, resolve_train
from methods._context import make_optimizer
from strategies.losses import default_loss
from strategies.template import AMP_DTYPES


@dataclass
class Session:
    """One stream's session to train on, with the recipe to train it by."""

    stream: str
    session: int
    train: dict  # overrides of the stream's recipe
    device: str = "cpu"

    def build(self):
        built = streams.build(self.stream, image_size=self.train.get("image_size"))
        return built, resolve_train(built.info.recipe, {**self.train, "device": self.device})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(built, train, device):
    return build_model(built.benchmark, built.info, train, seed=0).to(device)


class SteadyClock(SupervisedPlugin):
    """Times a training session from its iteration ``skip`` (its batch already fetched) to
    the session's end: loader start-up and the first steps (allocator, kernel autotuning)
    stay out. The device is synchronised at those two points only."""

    def __init__(self, skip: int, device: torch.device):
        super().__init__()
        self.skip, self.device = skip, device
        self.iterations, self.start, self.seconds = 0, None, None

    def before_training_exp(self, strategy, **kwargs):
        self.iterations, self.start, self.seconds = 0, None, None

    def before_training_iteration(self, strategy, **kwargs):
        if self.iterations == self.skip:
            _sync(self.device)
            self.start = time.perf_counter()

    def after_training_iteration(self, strategy, **kwargs):
        self.iterations += 1

    def after_training_exp(self, strategy, **kwargs):
        if self.start is not None:
            _sync(self.device)
            self.seconds = time.perf_counter() - self.start


def suite_seconds(built, train, session: int, method: str = "finetune",
                  plugins=(), overrides: dict | None = None, skip: int | None = None) -> float:
    """Seconds ``method``'s strategy (its defaults updated by ``overrides``) takes to train
    ``session`` (earlier ones untimed); with ``skip``, from its iteration ``skip`` on
    (:class:`SteadyClock`)."""
    device = torch.device(train["device"])
    exps = list(built.benchmark.train_stream)[: session + 1]
    model = _model(built, train, device)
    recipe = methods.get(method)
    hparams = methods.resolve_hparams(method, overrides or {})
    clock = [] if skip is None else [SteadyClock(skip, device)]
    ctx = methods.MethodContext(model, built.info, hparams, train, built.benchmark, device,
                                [*plugins, *clock])
    strategy = recipe.build(ctx)
    for exp in exps[:-1]:
        strategy.train(exp)
    _sync(device)
    start = time.perf_counter()
    strategy.train(exps[-1])
    _sync(device)
    return clock[0].seconds if clock else time.perf_counter() - start


def hand_seconds(built, train, session: int, data, skip: int | None = None) -> float:
    """Seconds a plain PyTorch loop takes over the same tensors ``data = (x, y, mask)``:
    the same model, optimizer, loss, batch size, epochs and (when set) autocast and
    channels-last, each batch copied to the device from pinned memory, as a DataLoader with
    ``pin_memory`` does; with ``skip``, from its iteration ``skip`` on, as
    :class:`SteadyClock` times the suite."""
    device = torch.device(train["device"])
    x, y, mask = data
    n_seen = built.info.seen_after(session)
    memory_format = torch.channels_last if train["channels_last"] else torch.contiguous_format
    model = _model(built, train, device).to(memory_format=memory_format)
    optimizer = make_optimizer(model, train)
    loss_fn = default_loss(built.info.label_mode)
    amp = AMP_DTYPES[train["amp"]]
    scaler = torch.amp.GradScaler(device.type, enabled=train["amp"] == "fp16")
    batch = train["batch_size"]
    _sync(device)
    start = time.perf_counter()
    iterations = 0
    for _ in range(train["epochs"]):
        for rows in torch.randperm(len(x)).split(batch):
            xb, yb, mb = (_to(device, t[rows]) for t in (x, y, mask))
            if iterations == skip:
                _sync(device)
                start = time.perf_counter()
            iterations += 1
            xb = xb.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(xb).float()
            target = yb[:, :n_seen] if built.info.label_mode == "multi" else yb
            loss = loss_fn(logits[:, :n_seen], target, mb[:, :n_seen])
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    _sync(device)
    return time.perf_counter() - start


def _to(device: torch.device, batch: torch.Tensor) -> torch.Tensor:
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


def session_tensors(built, session: int):
    """The session's training set as three host tensors."""
    data = built.benchmark.train_stream[session].dataset
    x, y, mask, _ = data.batch(range(len(data)))
    return x, y, mask


def step_overhead(where: Session, repeats: int, skip: int | None = None) -> dict:
    """Samples/s of the suite's ``finetune`` and of the hand loop; median time ratio. With
    ``skip``, the steady state: each session timed from its iteration ``skip`` on."""
    built, train = where.build()
    data = session_tensors(built, where.session)
    samples = len(data[0]) * train["epochs"]
    if skip is not None:
        if skip * train["batch_size"] >= len(data[0]):
            raise ValueError(f"skip={skip} batches of {train['batch_size']} leaves none of the "
                             f"session's {len(data[0])} samples to time")
        samples -= skip * train["batch_size"]
    suite_seconds(built, train, where.session)  # warm-up: allocator, kernels, autotuning
    hand_seconds(built, train, where.session, data)
    suite, hand = [], []
    for r in range(repeats):
        runs = [(suite, lambda: suite_seconds(built, train, where.session, skip=skip)),
                (hand, lambda: hand_seconds(built, train, where.session, data, skip))]
        for times, run in runs[:: 1 if r % 2 == 0 else -1]:
            times.append(run())
    ratios = [s / h for s, h in zip(suite, hand)]
    return {"ratio": statistics.median(ratios), "ratios": ratios,
            "suite_samples_per_s": samples / statistics.median(suite),
            "hand_samples_per_s": samples / statistics.median(hand),
            "samples": samples, "skipped_iterations": skip, "threads": torch.get_num_threads(),
            "stream": where.stream, "session": where.session, "train": train}


class SampleCounter(SupervisedPlugin):
    """Counts the training samples a strategy processes (memory and extra rows included)."""

    def __init__(self):
        super().__init__()
        self.samples = 0

    def before_training_exp(self, strategy, **kwargs):
        self.samples = 0

    def after_training_iteration(self, strategy, **kwargs):
        self.samples += len(strategy.mb_x)


def method_costs(where: dict, repeats: int, variants: dict | None = None) -> dict:
    """Seconds per training sample of each method over ``finetune``'s, on the session
    ``where[mode]`` (a Session) of the first label mode the method supports: the median over
    repeats of the ratio within a repeat (methods in rotating order). ``variants``: label ->
    (method, hyperparameter overrides); by default every registered method, its defaults."""
    registered = methods.discover()
    variants = variants or {name: (name, {}) for name in registered}
    groups: dict[str, list[str]] = {}
    for label, (name, _) in sorted(variants.items()):
        mode = next((mode for mode in where if mode in registered[name].label_modes), None)
        if mode and label != "finetune":
            groups.setdefault(mode, []).append(label)
    costs = {}
    for mode, labels in groups.items():
        built, train = where[mode].build()
        times = {label: [] for label in ["finetune", *labels]}
        for r in range(repeats):
            order = list(times)[r % len(times):] + list(times)[:r % len(times)]
            for label in order:
                if "error" in costs.get(label, {}):
                    continue
                counter = SampleCounter()
                try:
                    method, overrides = variants.get(label, (label, {}))
                    elapsed = suite_seconds(built, train, where[mode].session, method,
                                            [counter], overrides)
                except Exception as exc:  # one broken method does not stop the others
                    costs[label] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
                    continue
                times[label].append(elapsed / counter.samples)
        base = times["finetune"]
        for label, seconds in times.items():
            if label not in costs:
                ratios = [t / b for t, b in zip(seconds, base)]
                costs[label] = {"ratio": statistics.median(ratios), "ratios": ratios,
                                "us_per_sample": 1e6 * statistics.median(seconds),
                                "stream": where[mode].stream, "session": where[mode].session}
    return costs
