"""The two-stage learnable weight scaling (LWS) of long-tailed class-incremental learning (Liu
et al., "Long-Tailed Class Incremental Learning", ECCV 2022, Sec. 4), as its code
(xialeiliu/Long-Tailed-CIL ``src/approach/lucir_2stage.py``, ``eeil_2stage.py``,
``LAS_utils.LearnableWeightScaling``, ``datasets/data_loader.ClassAwareSampler``) builds it:

- every class has a scale ``s_c`` (1 when its session starts); predictions are
  ``s_c * z_c``; the scales never touch stage 1 (training, the previous model's outputs);
- stage 2, after each session's training (the first included): the backbone frozen in eval
  mode, its features of the session's training set (memory included; train transform),
  drawn by a class-aware sampler (classes visited in reshuffled cycles, ``per_class`` = 4
  consecutive samples of a class from its own reshuffled cycle; ``len(data)`` samples an
  epoch), train the new classes' classifier rows (and the cosine head's shared scale, which
  is part of LUCIR's last head in the reference) and every seen class's ``s_c``, by the
  cross-entropy of the scaled logits; SGD (momentum 0.9, the recipe's weight decay), lr
  ``lr`` for all in the first epoch, then after each epoch e the cosine value
  ``lr_e = lr (1 + cos(pi e / epochs)) / 2`` for the head and ``lr_e / 10`` for the scales
  (the reference's ``adjust_learning_rate_stage_2``).

Departures: the reference's per-session lr factor is FACIL's ``lr_factor`` (10 on CIFAR), a
constant here; its sampler draws from Python's global ``random``, here a seeded generator;
its ``clipgrad`` (10000) is not applied. Multi-label (ours): the sampler cycles over the
images labelled with each class and the loss is the masked BCE of the scaled logits.
The session's notes keep ``lws_fit_s`` (stage 2's time) and ``lws_epochs``.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch.utils.data import BatchSampler, DataLoader

from .loader import _Batches
from .losses import masked_bce, supervised_mask

SCALE_LR_FACTOR = 10  # the reference's lr_factor: after epoch 1 the scales learn at lr_e / 10
PER_CLASS = 4  # ClassAwareSampler's num_samples_cls


def class_aware_order(rows_of: list[torch.Tensor], n: int, generator: torch.Generator,
                      per_class: int = PER_CLASS) -> torch.Tensor:
    """``n`` row indices: a class from a reshuffled cycle over the classes, then
    ``per_class`` rows from that class's own reshuffled cycle, and so on (the reference's
    ``class_aware_sample_generator``); ``rows_of[c]`` the rows of class c (non-empty)."""
    def cycle(values):
        while True:
            for i in torch.randperm(len(values), generator=generator).tolist():
                yield values[i]

    classes = cycle(list(range(len(rows_of))))
    rows = [cycle(r.tolist()) for r in rows_of]
    out: list[int] = []
    while len(out) < n:
        source = rows[next(classes)]
        out.extend(next(source) for _ in range(per_class))
    return torch.tensor(out[:n], dtype=torch.long)


def cosine_lr(lr: float, epoch: int, epochs: int) -> float:
    """The reference's ``adjust_learning_rate_stage_2``: the lr after ``epoch`` (1-based)."""
    return 0.5 * lr * (1 + math.cos(epoch / epochs * math.pi))


class WeightScaling(SupervisedPlugin):
    """Per-class scales ``scale`` (num_classes,), fitted by stage 2 after each session and
    applied to the logits at evaluation. Put it after plugins that change the model after
    training (e.g. EEIL's fine-tuning)."""

    def __init__(self, num_classes: int, epochs: int = 30, lr: float = 0.1,
                 weight_decay: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(num_classes))
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.generator = generator or torch.Generator()

    def after_training_exp(self, strategy, **kwargs):
        start = time.perf_counter()
        self.scale.data = self.scale.data.to(strategy.device)
        with torch.no_grad():
            self.scale[strategy.n_old:strategy.n_seen] = 1.0  # a new session's layer
        self.fit(strategy)
        strategy.notes.update(lws_fit_s=time.perf_counter() - start, lws_epochs=self.epochs)

    def fit(self, strategy):
        data, mode = strategy.adapted_dataset.train(), strategy.info.label_mode
        n_old, n = strategy.n_old, strategy.n_seen
        model, device = strategy.model, strategy.device
        if mode == "multi":
            rows_of = [torch.nonzero(data.targets[:, c] * data.mask[:, c]).flatten()
                       for c in range(n)]
        else:
            rows_of = [torch.nonzero(data.targets == c).flatten() for c in range(n)]
        rows_of = [r for r in rows_of if len(r)]

        def batches(epoch):
            order = class_aware_order(rows_of, len(data), self.generator)
            loader = DataLoader(_Batches(data), batch_size=None, num_workers=0,
                                sampler=BatchSampler(order.tolist(), strategy.train_mb_size,
                                                     False))
            for x, y, mask, _ in loader:
                with torch.no_grad():
                    feats = model.features(x.to(device)).float()
                yield feats, y.to(device), mask.to(device)

        def loss(logits, targets, mask):
            if mode == "multi":
                return masked_bce(logits, targets[:, :n],
                                  supervised_mask(mask[:, :n], strategy.negatives, n_old))
            return F.cross_entropy(logits, targets)

        was_training = model.training
        model.eval()
        try:
            train_scaling(model.head, self.scale, batches, loss, n_old, n,
                          epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay)
        finally:
            model.train(was_training)

    def after_eval_forward(self, strategy, **kwargs):
        scale = self.scale.detach().to(strategy.mb_output.device)
        strategy.mb_output = strategy.mb_output * scale


def train_scaling(head: torch.nn.Module, scale: torch.nn.Parameter, batches, loss,
                  n_old: int, n_seen: int, *, epochs: int, lr: float,
                  weight_decay: float) -> None:
    """Stage 2 on ``batches(epoch)`` (an iterable of ``(features, targets, mask)``): the
    head's new rows ``n_old:n_seen`` (its other rows kept), its shared parameters and
    ``scale`` trained on ``loss((head(f) * scale)[:, :n_seen], targets, mask)``."""
    params = list(head.parameters())
    kept = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(
        [{"params": params}, {"params": [scale]}],
        lr=lr, momentum=0.9, weight_decay=weight_decay)
    for epoch in range(1, epochs + 1):
        for feats, targets, mask in batches(epoch):
            value = loss((head(feats) * scale)[:, :n_seen], targets, mask)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            _keep_rows(params, kept, n_old, n_seen, len(scale))
        for i, group in enumerate(optimizer.param_groups):
            now = cosine_lr(lr, epoch, epochs)
            group["lr"] = now / SCALE_LR_FACTOR if i else now


@torch.no_grad()
def _keep_rows(params, kept, n_old: int, n_seen: int, num_classes: int) -> None:
    """Stage 2 trains only the new classes' rows of the head's per-class parameters (those
    with a row per class; the reference's last head): every other row goes back to its
    value. Parameters shared by all classes (the cosine head's scale) train freely."""
    for param, value in zip(params, kept):
        if param.dim() and param.shape[0] == num_classes:
            param[:n_old] = value[:n_old]
            param[n_seen:] = value[n_seen:]
