"""The class prior of the balanced softmax / balanced sigmoid, kept across sessions, as the
training criterion (the loss itself is strategies/balanced.py's).

Why the choices exist. The balanced softmax trains on ``z + log pi_train`` so that the raw
logits ``z`` model a balanced label distribution (Ren et al. 2020); what it corrects is the
gap between the class frequencies *the model is trained on* and a balanced one. In
class-incremental learning that gap is the old/new imbalance of the current training set
(Jodelet et al.): the memory holds a few images of each old class, the session many of the
new ones.

``prior`` -- which frequencies (multi-label: log-odds ``log(n+_c / n-_c)``; single-label
``log n_c``):

- ``supervised`` (bsce's default before the validation sweep): ``n+``/``n-`` the supervised
  positives/negatives of class c in
  the current training set, memory included, as the loss sees them (the template's
  ``class_counts``/``class_negatives``, under ``negatives``). With ``negatives=labelled``
  an old class is supervised on memory rows only, so its prior is about as close to 0 as a
  new class's: the balanced sigmoid then corrects next to nothing between old and new, and
  a fixed per-class shift is also equivalent to a shifted head bias, which per-class AP
  ignores (it acts on mAP only through the training dynamics it changes).
- ``session``: ``n+`` as above, ``n-`` every other image of the current training set
  (unlabelled entries counted as negatives *for the prior only*; the loss still
  supervises what ``negatives`` says): an old class, positive in a few memory rows among
  all the session's images, gets a strongly negative prior, the old/new imbalance the
  model actually trains under.
- ``stream``: the stream's own frequencies, ``n+`` = the class's training images over the
  whole stream (``StreamInfo.class_counts``), ``n-`` = the stream's other training
  images (single-label: ``log n_c`` of those counts). This corrects the dataset's long
  tail only, as Ren et al.'s balanced softmax does offline, not the old/new imbalance of
  incremental training. Single-label ``session`` equals ``supervised``.

``absent`` -- a seen class with no supervised positive in the current training set (an old
class without memory, ``--memory 0``; issue 13): its training frequency is 0, so the
balanced softmax's shift ``log 0`` takes it out of the loss.

- ``last`` (issue 13's choice, bsce's default before the validation sweep): the class keeps
  its last known prior (that of the
  last session where it had positives; without memory, the session it was learned in). It
  stays in the softmax and its logit is pushed down on every image, by more than plain CE
  (its prior is that of a class present in the data): the opposite of what the balanced
  softmax is for, the price of keeping old classes as competitors of the new ones.
- ``exclude``: the balanced softmax's own limit ``pi_c -> 0``: a shift of
  :data:`EXCLUDED`, under which the class's probability underflows to 0, so it neither
  gains nor loses anything from the classification loss (its logit keeps only what other
  terms, e.g. distillation, give it). Not decisive a priori: new classes are then never
  trained against old ones. Which of the two serves the memory-free setting is a
  measurement (validation split), kept as an option.
"""
from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from .balanced import log_prior, logit_adjusted_loss
from .options import BSCE_ABSENT, BSCE_PRIORS

# The shift of an excluded class: no logit overcomes it, its probability underflows to 0 in
# float32 (loss and gradient 0) without the infinities of log 0.
EXCLUDED = -1e4


def stream_images(benchmark) -> int:
    """The number of distinct training images of a stream (its sessions' training sets may
    share images, with different partial labels)."""
    return len(torch.unique(torch.cat([torch.as_tensor(exp.dataset.index)
                                       for exp in benchmark.train_stream])))


class BalancedPrior(SupervisedPlugin):
    """A plugin that updates ``prior`` (num_classes,) at each session start and, called as
    ``criterion(logits, targets, mask)``, is the logit-adjusted loss with that prior.

    ``prior`` and ``absent``: see the module docstring; ``stream_counts`` (num_classes,) and
    ``stream_images`` (the stream's training images) are needed for ``prior="stream"``."""

    def __init__(self, label_mode: str, prior: str = "supervised", absent: str = "last",
                 stream_counts=None, stream_images: int | None = None):
        super().__init__()
        if prior not in BSCE_PRIORS or absent not in BSCE_ABSENT:
            raise ValueError(f"prior {prior!r} / absent {absent!r}: expected "
                             f"{'|'.join(BSCE_PRIORS)} and {'|'.join(BSCE_ABSENT)}")
        if prior == "stream" and (stream_counts is None or
                                  label_mode == "multi" and stream_images is None):
            raise ValueError("prior='stream' needs the stream's class counts (and, "
                             "multi-label, its number of training images)")
        self.label_mode, self.source, self.absent = label_mode, prior, absent
        self.stream_counts, self.stream_images = stream_counts, stream_images
        self.prior: torch.Tensor | None = None

    def frequencies(self, strategy) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The (positives, negatives) counts the prior is the log(-odds) of."""
        positives = strategy.class_counts
        multi = self.label_mode == "multi"
        if self.source == "stream":
            counts = torch.as_tensor(self.stream_counts, dtype=positives.dtype,
                                     device=positives.device)
            return counts, (self.stream_images - counts) if multi else None
        if not multi:
            return positives, None
        if self.source == "session":
            return positives, len(strategy.adapted_dataset) - positives
        return positives, strategy.class_negatives

    def before_training_exp(self, strategy, **kwargs):
        current = log_prior(*self.frequencies(strategy))
        if self.absent == "exclude":
            fallback = torch.full_like(current, EXCLUDED)
        else:
            fallback = current if self.prior is None else self.prior.to(current.device)
        self.prior = torch.where(strategy.class_counts > 0, current, fallback)

    def __call__(self, logits, targets, mask):
        return logit_adjusted_loss(logits, targets, mask, self.prior, self.label_mode)
