"""Bias correction (Wu et al., "Large Scale Incremental Learning", CVPR 2019, Sec. 3-4,
Eq. 4-5), as the long-tailed CIL code (xialeiliu/Long-Tailed-CIL ``src/approach/bic.py``,
FACIL's BiC) and PyCIL (``models/bic.py``) build it:

- every session owns a bias layer ``(alpha, beta)`` applied to its classes' logits,
  ``q_c = alpha z_c + beta``; it is the identity while the session trains (stage 1) and is
  fitted afterwards (stage 2) with the rest of the model frozen. The layers live in
  :class:`BiasCorrectedHead`, which replaces the model's linear head. Which layers apply
  (``layers``):

  - ``latest`` (the original code, wuyuebupt/LargeScaleIncrementalLearning ``resnet.py``,
    and Avalanche's ``BiCPlugin``): only the newest session's layer. At test, the old classes'
    logits are raw and the newest classes' corrected; while session t trains, the model's own
    logits are raw and the previous model's (the distillation target) carry session t-1's
    layer; stage 2 fits the new layer on raw logits. Here: the head's layers are reset to the
    identity at every session start (after the previous model is copied), and a fit sets its
    session's layer only.
  - ``all`` (FACIL / LT-CIL and PyCIL): every fitted layer stays applied, so old-class logits
    are never changed by a later fit; the layers are part of the model's output in training,
    at test, in stage 2 and in the previous model.
- stage 2 data: a class-balanced validation set held out of training: ``ceil(share *
  quota)`` samples of every class (quota: the memory's per-class budget), taken out of its
  session's training data and kept while the class is old (shrunk with the quota in
  ``total`` mode); the training memory keeps ``quota - ceil(share * quota)`` per class.
- stage 2 loss (:func:`fit_bias`, the FACIL code): cross-entropy of the corrected logits
  of all seen classes plus ``0.1 * beta^2 / 2``, SGD with momentum 0.9, ``epochs`` passes
  in batches.

Departures, all ours: stage 2 computes the frozen model's logits on the validation set once
(eval transform, no augmentation) instead of one forward pass per epoch (the model is in
eval mode, so the logits differ only by augmentation); the held-out samples are drawn at
random per class (seeded), where FACIL takes each class's first samples; a class keeps at
least one training sample. Multi-label: the same per-session affine layer, fitted by the
masked binary cross-entropy over the validation set's supervised entries; held-out images
are drawn per new class among those labelled with it, and leave the training set.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from .loader import eval_outputs
from .losses import masked_bce, supervised_mask
from .memory import dedupe
from .options import BIAS_LAYERS

BETA_DECAY = 0.1  # the FACIL code's L2 penalty on beta: 0.1 * beta^2 / 2


class BiasCorrectedHead(torch.nn.Module):
    """``linear(x) * alpha + beta`` with per-class ``alpha`` / ``beta`` buffers (ones and
    zeros until a session's layer is fitted); buffers, so the training optimiser and its
    weight decay never see them."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.linear = linear
        n = linear.out_features
        self.register_buffer("alpha", torch.ones(n, device=linear.weight.device))
        self.register_buffer("beta", torch.zeros(n, device=linear.weight.device))

    def forward(self, x):
        return self.linear(x) * self.alpha + self.beta

    def reset(self) -> None:
        """Every layer back to the identity (``latest``: only the newest layer applies)."""
        self.alpha.fill_(1.0)
        self.beta.zero_()


def corrected(logits: torch.Tensor, n_old: int, alpha, beta) -> torch.Tensor:
    """Old columns as they are, new columns ``alpha z + beta`` (Eq. 5)."""
    return torch.cat([logits[:, :n_old], alpha * logits[:, n_old:] + beta], dim=1)


def bias_loss(logits, targets, mask, n_old: int, alpha, beta, label_mode: str):
    """Stage 2's loss on the corrected logits plus ``0.1 * beta^2 / 2``."""
    out = corrected(logits, n_old, alpha, beta)
    if label_mode == "multi":
        fit = masked_bce(out, targets, mask)
    else:
        fit = F.cross_entropy(out, targets)
    return fit + BETA_DECAY * beta ** 2 / 2


def fit_bias(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None,
             n_old: int, *, epochs: int, lr: float, batch_size: int,
             generator: torch.Generator, label_mode: str = "single") -> tuple[float, float]:
    """Fit the new session's ``(alpha, beta)`` on frozen ``logits`` (N, n_seen) of the
    validation set; each epoch visits the rows in the order of ``torch.randperm(N,
    generator=generator)``, in batches. Returns ``(alpha, beta)``."""
    alpha = torch.ones((), device=logits.device, requires_grad=True)
    beta = torch.zeros((), device=logits.device, requires_grad=True)
    optimizer = torch.optim.SGD([alpha, beta], lr=lr, momentum=0.9)
    for _ in range(epochs):
        order = torch.randperm(len(logits), generator=generator).to(logits.device)
        for rows in order.split(batch_size):
            loss = bias_loss(logits[rows], targets[rows],
                             None if mask is None else mask[rows], n_old, alpha, beta,
                             label_mode)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return alpha.item(), beta.item()


def class_rows(data, c: int, label_mode: str) -> torch.Tensor:
    """Rows of ``data`` labelled with class ``c``."""
    if label_mode == "multi":
        return torch.nonzero(data.targets[:, c] * data.mask[:, c]).flatten()
    return torch.nonzero(data.targets == c).flatten()


class BiasCorrection(SupervisedPlugin):
    """BiC's held-out validation set and stage 2. Put it before the memory's plugin (it
    takes its samples out of the session's data before the memory joins it). The session's
    notes keep ``bic_alpha``, ``bic_beta``, ``bic_val`` (validation samples) and
    ``bic_fit_s`` (stage 2's time, the logits pass included). ``layers``: ``latest`` or
    ``all`` (see the module docstring)."""

    def __init__(self, memory, share: float = 0.1, epochs: int = 200, lr: float = 0.1,
                 generator: torch.Generator | None = None, layers: str = "latest"):
        super().__init__()
        if layers not in BIAS_LAYERS:
            raise ValueError(f"bias layers {layers!r}: expected {'|'.join(BIAS_LAYERS)}")
        self.layers = layers
        self.memory, self.size = memory, memory.max_size
        self.share, self.epochs, self.lr = share, epochs, lr
        self.generator = generator or torch.Generator()
        self.per_class: dict[int, object] = {}  # class -> its held-out rows
        self.head: BiasCorrectedHead | None = None

    def val_quota(self, n_seen: int) -> int:
        quota = self.size if self.memory.mode == "per_class" else self.size // max(1, n_seen)
        return math.ceil(self.share * quota)

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        """The training memory keeps the quota minus the validation share."""
        n, v = strategy.n_seen, self.val_quota(strategy.n_seen)
        if self.memory.mode == "per_class":
            self.memory.max_size = max(0, self.size - v)
        else:
            self.memory.max_size = max(0, self.size // max(1, n) - v) * n

    def before_training_exp(self, strategy, **kwargs):
        """``latest``: the model trains with raw logits (the previous model, copied before
        this hook, keeps the newest layer)."""
        if self.layers == "latest":
            strategy.model.head.reset()

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        data, mode = strategy.adapted_dataset, strategy.info.label_mode
        v = self.val_quota(strategy.n_seen)
        self.per_class = {c: rows.subset(range(min(v, len(rows))))
                          for c, rows in self.per_class.items()}
        # an image held out earlier (multi-label: it may show a new class too) leaves the
        # training set; an image in the memory is never held out
        taken = torch.isin(data.index, self._held())
        stored = self.memory.buffer.index if len(self.memory.buffer) else torch.empty(0)
        free = ~taken & ~torch.isin(data.index, stored.long())
        for c in strategy.info.sessions[strategy.session]:
            rows = class_rows(data, c, mode)
            rows = rows[free[rows] & ~taken[rows]]
            rows = rows[torch.randperm(len(rows), generator=self.generator)]
            chosen = rows[:min(v, len(rows) - 1)]
            taken[chosen] = True
            self.per_class[c] = data.subset(chosen)
        strategy.adapted_dataset = data.subset(torch.nonzero(~taken).flatten())
        self.memory.excluded = self._held()

    def _held(self) -> torch.Tensor:
        """Pool indices of every held-out image."""
        return torch.cat([torch.empty(0, dtype=torch.long),
                          *(rows.index for rows in self.per_class.values())])

    def validation_set(self):
        """The held-out rows of every seen class, each image once, eval transform (None
        when there is none)."""
        sets = [s for s in self.per_class.values() if len(s)]
        if not sets:
            return None
        merged = sets[0]
        for s in sets[1:]:
            merged = merged.concat(s)
        return dedupe(merged).eval()

    def after_training_exp(self, strategy, **kwargs):
        n_old, n = strategy.n_old, strategy.n_seen
        if n_old == 0:
            return
        start = time.perf_counter()
        model, device = strategy.model, strategy.device
        val = self.validation_set()
        if val is None:
            strategy.notes.update(bic_val=0)
            return
        logits = eval_outputs(model, val, strategy.eval_mb_size,
                              lambda x: model(x.to(device)).float())[:, :n]
        if strategy.info.label_mode == "multi":
            targets = val.targets[:, :n].to(device)
            mask = supervised_mask(val.mask[:, :n], strategy.negatives, n_old).to(device)
        else:
            targets, mask = val.targets.to(device), None
        alpha, beta = fit_bias(logits, targets, mask, n_old, epochs=self.epochs, lr=self.lr,
                               batch_size=strategy.train_mb_size, generator=self.generator,
                               label_mode=strategy.info.label_mode)
        head = model.head
        if self.layers == "latest":
            head.reset()
        head.alpha[n_old:n] = alpha
        head.beta[n_old:n] = beta
        strategy.notes.update(bic_alpha=alpha, bic_beta=beta, bic_val=len(val),
                              bic_fit_s=time.perf_counter() - start)
