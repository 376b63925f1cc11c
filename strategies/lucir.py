"""LUCIR's mechanisms (Hou et al., "Learning a Unified Classifier Incrementally via
Rebalancing", CVPR 2019), as the long-tailed CIL code (xialeiliu/Long-Tailed-CIL
``src/approach/lucir.py``, FACIL's LUCIR) builds them:

- a cosine-normalised classifier (Eq. 4): ``z_c = sigma * <f / ||f||, w_c / ||w_c||>``
  with one learnable scale ``sigma`` (eta in the paper) shared by all classes, initialised
  to 1, the rows uniform in ``+-1/sqrt(D)`` (:class:`CosineHead`);
- the less-forget constraint (Eq. 6): ``lambda * (1 - cos(f, f_prev))`` averaged over the
  batch (torch's ``CosineEmbeddingLoss`` with targets 1), ``f`` and ``f_prev`` the features
  the heads of the current and previous model receive, with the adaptive weight (Eq. 7)
  ``lambda = lambda_base * sqrt(n_old / n_new)``; the old classes' rows of the classifier
  are frozen while it is on (the reference freezes the old heads; ``sigma`` still learns);
- the margin ranking loss (Eq. 8): for each sample of an old class, its ground-truth
  cosine (before the scale) should exceed each of the ``K`` highest new-class cosines by
  ``margin``: ``mean relu(margin - cos_gt + cos_topk)`` over those samples and ``K``
  (torch's ``MarginRankingLoss``), times ``lamb_mr``; zero in a batch without old samples.

The cross-entropy on the scaled cosines is the template's loss. In the suite the model
keeps one head over all classes (classes in arrival order), so "old heads" are the rows
``:n_old`` of :class:`CosineHead`: :class:`LUCIRPlugin` copies them back after every
optimiser step, which freezes them whatever the optimiser (weight decay and momentum
included), as excluding them from the optimiser does in the reference.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin


class CosineHead(torch.nn.Module):
    """``sigma * cos(f, w_c)`` for every class c; ``cosine(f)`` gives the unscaled cosines.

    ``sigma`` has shape (1,), so the template's per-class reset of fresh head rows (which
    slices every head parameter by the new classes' rows) leaves it alone after the first
    session, as the reference shares one sigma across sessions."""

    def __init__(self, in_features: int, out_features: int, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(torch.empty(out_features, in_features, device=device))
        self.sigma = torch.nn.Parameter(torch.ones(1, device=device))
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)

    @classmethod
    def replacing(cls, linear: torch.nn.Linear) -> "CosineHead":
        """A cosine head of ``linear``'s shape and device (fresh weights)."""
        return cls(linear.in_features, linear.out_features, linear.weight.device)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.sigma * self.cosine(features)


def adaptive_lambda(base: float, n_old: int, n_new: int) -> float:
    """Eq. 7: ``base * sqrt(n_old / n_new)``."""
    return base * math.sqrt(n_old / n_new)


def less_forget_loss(features: torch.Tensor, prev_features: torch.Tensor) -> torch.Tensor:
    """Eq. 6 without its weight: ``mean_b 1 - cos(f_b, f_prev_b)``."""
    return (1 - F.cosine_similarity(features, prev_features.detach(), dim=1)).mean()


def margin_ranking_loss(cosines: torch.Tensor, targets: torch.Tensor, n_old: int, k: int,
                        margin: float) -> torch.Tensor:
    """Eq. 8 without its weight, on the unscaled ``cosines`` (B, n_seen): the samples of old
    classes rank their ground truth above their ``k`` highest new-class cosines by
    ``margin`` (``k`` capped at the number of new classes); 0 without old samples."""
    hard = targets < n_old
    if not hard.any():
        return cosines.new_zeros(())
    k = min(k, cosines.shape[1] - n_old)
    gt = cosines[hard].gather(1, targets[hard, None])
    top = cosines[hard, n_old:].topk(k, dim=1).values
    return F.relu(margin - gt + top).mean()


class LUCIRPlugin(SupervisedPlugin):
    """Adds LUCIR's less-forget and margin ranking terms to the loss in every session but
    the first, and freezes the old classes' rows of the :class:`CosineHead` (single-label).
    The features the head receives are read by a forward hook (no extra pass of the current
    model); the previous model's features cost one backbone pass. The session's notes keep
    ``lucir_lambda`` (Eq. 7's weight)."""

    needs_previous_model = True

    def __init__(self, lamb: float = 5.0, lamb_mr: float = 1.0, margin: float = 0.5,
                 k: int = 2, adapt_lambda: bool = True):
        super().__init__()
        self.lamb, self.lamb_mr, self.margin, self.k = lamb, lamb_mr, margin, k
        self.adapt_lambda = adapt_lambda
        self.lamda = lamb
        self._features = self._hook = self._old_rows = None

    def before_training_exp(self, strategy, **kwargs):
        head, n_old = strategy.model.head, strategy.n_old
        if n_old == 0:
            return
        if self.adapt_lambda:
            self.lamda = adaptive_lambda(self.lamb, n_old, strategy.n_seen - n_old)
        strategy.notes["lucir_lambda"] = self.lamda
        self._old_rows = head.weight[:n_old].detach().clone()

        def keep(module, inputs, output):
            self._features = inputs[0]
        self._hook = head.register_forward_hook(keep)

    def before_backward(self, strategy, **kwargs):
        if strategy.prev_model is None or self._hook is None:
            return
        n_old, n = strategy.n_old, strategy.n_seen
        with torch.no_grad(), torch.autocast(strategy.device.type, dtype=strategy.amp_dtype,
                                             enabled=strategy.amp_dtype is not None):
            prev = strategy.prev_model.features(strategy.mb_x)
        feats = self._features.float()
        loss = self.lamda * less_forget_loss(feats, prev.float())
        cosines = strategy.model.head.cosine(feats)[:, :n]
        loss = loss + self.lamb_mr * margin_ranking_loss(cosines, strategy.mb_y, n_old, self.k,
                                                         self.margin)
        strategy.loss = strategy.loss + loss
        self._features = None

    def after_update(self, strategy, **kwargs):
        if self._old_rows is not None:
            with torch.no_grad():
                strategy.model.head.weight[:len(self._old_rows)] = self._old_rows

    def after_training_exp(self, strategy, **kwargs):
        if self._hook is not None:
            self._hook.remove()
        self._hook = self._features = self._old_rows = None
