"""The class prior of the balanced softmax / balanced sigmoid, kept across sessions, as the
training criterion (the loss itself is strategies/balanced.py's).

Each session's prior comes from the template's ``class_counts`` (and ``class_negatives``,
multi-label): the current training set, memory included. A seen class with no labelled
positive in that set (an old class when there is no memory, ``--memory 0``) keeps its
last known prior, the one from the last session in which it had positives (the session it
was learned in, without memory): the prior never takes the log of a zero count and an old
class never drops out of the softmax (the choice of issue 13 for the memory-free setting).
"""
from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from .balanced import log_prior, logit_adjusted_loss


class BalancedPrior(SupervisedPlugin):
    """A plugin that updates ``prior`` (num_classes,) at each session start and, called as
    ``criterion(logits, targets, mask)``, is the logit-adjusted loss with that prior."""

    def __init__(self, label_mode: str):
        super().__init__()
        self.label_mode = label_mode
        self.prior: torch.Tensor | None = None

    def before_training_exp(self, strategy, **kwargs):
        positives = strategy.class_counts
        negatives = strategy.class_negatives if self.label_mode == "multi" else None
        current = log_prior(positives, negatives)
        last = current if self.prior is None else self.prior.to(current.device)
        self.prior = torch.where(positives > 0, current, last)

    def __call__(self, logits, targets, mask):
        return logit_adjusted_loss(logits, targets, mask, self.prior, self.label_mode)
