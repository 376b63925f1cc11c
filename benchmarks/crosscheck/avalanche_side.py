"""Avalanche 0.6's own strategies on the suite's stream tensors, starting from the suite's
initial weights, scored with the suite's metrics.

- Data: every training session's and the last test set's tensors, read from the suite's
  stream builder, become one Avalanche ``nc_benchmark`` whose experiences hold the suite's
  sessions (classes in arrival order, class ids unchanged); after session t the model is
  evaluated on the test images of the classes seen so far, as the suite does.
- Model: the suite's model built from the cell's seed (:func:`benchmarks.cell.build_model`),
  deep-copied, its logits cut to the classes seen so far (:class:`SeenClasses`), as the
  suite's template cuts them: unseen head rows get no gradient (Adam leaves them at their
  initial values, as the suite's fresh head rows), and distillation sees the old classes.
- Optimiser: the recipe's (``methods._context.make_optimizer``), its state reset at every
  session through Avalanche's own ``reset_optimizer_state``.
- Memory: ``per_class`` exemplars of every seen class (:class:`PerClassBuffer`, Avalanche's
  ClassBalancedBuffer with a fixed quota per class, random by reservoir sampling; the suite
  side runs with ``selection=random``); iCaRL keeps its own herding memory.

What is set alike by a subclass, and what cannot be, is each pair's ``notes``
(benchmarks/crosscheck/pairs.py).
"""
from __future__ import annotations

import copy
import math
from unittest import mock

import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.core import SupervisedPlugin
from avalanche.training import ICaRL, Naive
from avalanche.training.plugins import BiCPlugin, LwFPlugin, ReplayPlugin
from avalanche.training.losses import ICaRLLossPlugin
from avalanche.training.plugins import bic as avalanche_bic
from avalanche.training.storage_policy import ClassBalancedBuffer
from avalanche.training.supervised.icarl import _ICaRLPlugin

from benchmarks.metrics import per_class_on_subsets, session_metrics, summarize
from methods._context import make_optimizer
from strategies.template import silent_evaluator


def avalanche_benchmark(benchmark, info):
    """The suite's single-label stream as an Avalanche class-incremental benchmark."""
    def tensors(data):
        x, y, _, _ = data.eval().batch(range(len(data)))
        return x, y.long()

    xs, ys = zip(*(tensors(exp.dataset) for exp in benchmark.train_stream))
    train = _make_taskaware_tensor_classification_dataset(torch.cat(xs), torch.cat(ys))
    test = _make_taskaware_tensor_classification_dataset(*tensors(benchmark.test_stream[-1]
                                                                  .dataset))
    return nc_benchmark(train, test, len(info.sessions), task_labels=False, shuffle=False,
                        fixed_class_order=list(range(info.num_classes)),
                        per_exp_classes={t: len(s) for t, s in enumerate(info.sessions)})


class SeenClasses(torch.nn.Module):
    """``module(x)[:, :n]``: the logits of the ``n`` classes seen so far."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module, self.n = module, 0

    def forward(self, x):
        return self.module(x)[:, :self.n]


class Seen(SupervisedPlugin):
    """Sets every :class:`SeenClasses` of the model to the classes seen after the session
    being trained (before anything of the session runs)."""

    def __init__(self, info):
        super().__init__()
        self.info = info

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        n = self.info.seen_after(strategy.experience.current_experience)
        for module in strategy.model.modules():
            if isinstance(module, SeenClasses):
                module.n = n


class Scores(SupervisedPlugin):
    """The evaluated logits and targets of one ``eval`` call (all its experiences)."""

    def before_eval(self, strategy, **kwargs):
        self.logits, self.targets = [], []

    def after_eval_iteration(self, strategy, **kwargs):
        self.logits.append(strategy.mb_output.detach().cpu())
        self.targets.append(strategy.mb_y.cpu())


class PerClassBuffer(ClassBalancedBuffer):
    """Avalanche's class-balanced reservoir buffer with ``per_class`` samples of every seen
    class (its own rule divides ``max_size`` over the seen classes)."""

    def __init__(self, per_class: int, max_size: int):
        super().__init__(max_size=max_size, adaptive_size=True)
        self.per_class = per_class

    def get_group_lengths(self, num_groups):
        return [self.per_class] * num_groups

    def update(self, strategy, **kwargs):
        """What Avalanche's deprecated ``update`` (BiCPlugin calls it) does, unwarned."""
        self.post_adapt(strategy, strategy.experience)


class ConcatReplay(SupervisedPlugin):
    """Replay by concatenation with Avalanche's storage policy: the buffer joins the
    session's data (``adapted_dataset``) and is updated after the session."""

    def __init__(self, storage_policy):
        super().__init__()
        self.storage_policy = storage_policy

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        if len(self.storage_policy.buffer):
            strategy.adapted_dataset = strategy.adapted_dataset.concat(
                self.storage_policy.buffer)

    def after_training_exp(self, strategy, **kwargs):
        self.storage_policy.post_adapt(strategy, strategy.experience)


class EvalTeacherLwF(LwFPlugin):
    """Avalanche's LwF with its teacher in eval mode (it deep-copies the model in train
    mode, so its BatchNorm layers would use batch statistics, unlike the suite's)."""

    def after_training_exp(self, strategy, **kwargs):
        super().after_training_exp(strategy, **kwargs)
        self.lwf.prev_model.eval()


class MeansWithoutFlips(_ICaRLPlugin):
    """Avalanche's iCaRL plugin with class means of the exemplars only: it averages in the
    exemplars' horizontal flips (``torch.flip(x, [3])``), which the suite (LT-CIL) does
    not; here the flipped copy is the exemplars themselves, so both means are equal."""

    def compute_class_means(self, strategy):
        with mock.patch.object(torch, "flip", lambda x, dims: x):
            super().compute_class_means(strategy)


class LTCILLoss(ICaRLLossPlugin):
    """The suite's iCaRL loss (LT-CIL's) in place of Avalanche's all-sigmoid one: softmax
    cross-entropy over the seen classes plus ``lamb * sum_{c old} BCE(sigmoid(z_c),
    sigmoid(z_prev_c))``, the teacher's logits from its training head in eval mode (Avalanche's
    teacher is a train-mode copy, BatchNorm on batch statistics)."""

    def setup(self, info, lamb: float):
        self.info, self.lamb, self.n_seen = info, lamb, 0
        return self

    def before_training_exp(self, strategy, **kwargs):
        self.n_seen = self.info.seen_after(strategy.experience.current_experience)

    def before_forward(self, strategy, **kwargs):
        if self.old_model is not None:
            teacher = self.old_model.eval()
            with torch.no_grad():
                self.old_logits = teacher.train_classifier(teacher.feature_extractor(
                    strategy.mb_x))

    def __call__(self, logits, targets):
        loss = torch.nn.functional.cross_entropy(logits[:, :self.n_seen], targets)
        if self.old_logits is not None and self.old_classes:
            n = len(self.old_classes)  # the old classes are the first n (arrival order)
            loss = loss + self.lamb * n * torch.nn.functional.binary_cross_entropy_with_logits(
                logits[:, :n], torch.sigmoid(self.old_logits[:, :n]))
            self.old_logits = None
        return loss


def _multistep_without_verbose(optimizer, milestones, gamma=0.1, **kwargs):
    kwargs.pop("verbose", None)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=gamma, **kwargs)


class ClassAxisBiC(BiCPlugin):
    """Avalanche's BiC plugin with two fixes: its distillation's softmax runs over the batch
    axis (``softmax(old / 2, dim=0)``), here over the classes as in the original code and
    the suite; and its stage 2 passes ``verbose=`` to MultiStepLR, which torch 2.14 rejects,
    here dropped (its milestones 50/100/150 and gamma 0.1 kept)."""

    def cross_entropy(self, new_outputs, old_outputs):
        soft = torch.softmax(old_outputs / self.T, dim=1)
        return torch.nn.functional.cross_entropy(new_outputs / self.T, soft)

    def bias_correction_step(self, strategy, **kwargs):
        with mock.patch.object(avalanche_bic, "MultiStepLR", _multistep_without_verbose):
            super().bias_correction_step(strategy, **kwargs)


def build(variant: str, model, info, train: dict, hparams: dict, plugins: list):
    """The Avalanche strategy ``variant`` (see pairs.py) over a copy of ``model``."""
    model = copy.deepcopy(model)
    common = dict(train_mb_size=train["batch_size"], train_epochs=train["epochs"],
                  eval_mb_size=train["eval_batch_size"], evaluator=silent_evaluator())
    per_class = train["memory"]
    buffer = PerClassBuffer(per_class, per_class * info.num_classes)
    if variant in ("icarl", "icarl-lt-loss"):  # as shipped, its loss covers every output
        strategy = ICaRL(feature_extractor=model.backbone, classifier=model.head,
                         optimizer=make_optimizer(model, train), memory_size=per_class,
                         buffer_transform=None, fixed_memory=False, plugins=list(plugins),
                         **common)
        for plugin in strategy.plugins:
            if type(plugin) is _ICaRLPlugin:
                plugin.__class__ = MeansWithoutFlips
            if variant == "icarl-lt-loss" and type(plugin) is ICaRLLossPlugin:
                plugin.__class__ = LTCILLoss
                plugin.setup(info, hparams["lamb"])
        return strategy
    seen = SeenClasses(model)
    optimizer = make_optimizer(seen, train)
    if variant == "naive":
        return Naive(model=seen, optimizer=optimizer, plugins=list(plugins), **common)
    if variant == "replay-concat":
        return Naive(model=seen, optimizer=optimizer,
                     plugins=[*plugins, ConcatReplay(buffer)], **common)
    if variant == "replay":
        return Naive(model=seen, optimizer=optimizer, plugins=[
            *plugins, ReplayPlugin(buffer.max_size, storage_policy=buffer)], **common)
    if variant == "lwf":
        # Avalanche's KL has no T^2 factor: alpha * T^2 weighs it as the suite's
        lwf = EvalTeacherLwF(hparams["alpha"] * hparams["temperature"] ** 2,
                             hparams["temperature"])
        return Naive(model=seen, optimizer=optimizer, plugins=[*plugins, lwf], **common)
    if variant == "bic":
        # the suite holds out ceil(share * quota) images per class out of the memory's
        # quota; Avalanche holds out int(val_percentage * mem_size) in all, split over the
        # seen classes: the same count per class once all classes are seen
        held = math.ceil(hparams["val_share"] * per_class)
        kept = PerClassBuffer(per_class - held, 10 * held * info.num_classes)
        bic = ClassAxisBiC(mem_size=kept.max_size, storage_policy=kept, val_percentage=0.1,
                           T=hparams["temperature"], stage_2_epochs=hparams["bias_epochs"],
                           lr=hparams["bias_lr"])
        return Naive(model=seen, optimizer=optimizer, plugins=[*plugins, bic], **common)
    raise ValueError(f"unknown Avalanche variant {variant!r}")


def run(variant: str, benchmark, info, model, train: dict, hparams: dict, seed: int) -> dict:
    """Train ``variant`` session by session; the suite's summary of its test scores."""
    from benchmarks.cell import seed_everything

    seed_everything(seed)
    scores = Scores()
    strategy = build(variant, model, info, train, hparams, [Seen(info), scores])
    stream = avalanche_benchmark(benchmark, info)
    sessions = []
    for t, exp in enumerate(stream.train_stream):
        strategy.train(exp, reset_optimizer_state=train["reset_optimizer"])
        strategy.eval(stream.test_stream[:t + 1])
        logits, targets = torch.cat(scores.logits), torch.cat(scores.targets)
        sessions.append(session_metrics(logits, targets, info.seen_after(t), "single",
                                        info.class_counts, n_old=info.sessions[t][0]))
    # the final model on each earlier session's test images (classes seen by then)
    earlier = [(torch.nonzero(targets < info.seen_after(t)).flatten(), info.seen_after(t))
               for t in range(len(info.sessions) - 1)]
    final = per_class_on_subsets(logits, targets, torch.arange(len(targets)), earlier,
                                 "single", info.seen_after(len(info.sessions) - 1))
    return summarize(sessions, "single", final)
