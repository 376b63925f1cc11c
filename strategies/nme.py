"""The nearest-mean-of-exemplars classifier (iCaRL, Rebuffi et al., CVPR 2017, Alg. 1), as
the long-tailed CIL code (``icarl.py``: ``compute_mean_of_exemplars``, ``classify``):

- each class's mean is the mean of its exemplars' L2-normalised features, re-normalised
  (features of the eval transform, the model in eval mode), computed after the memory's
  update at the end of every session;
- a test sample's score for class c is ``-||f / ||f|| - mu_c||^2``, so the arg-max is the
  nearest mean. A seen class without exemplars (no memory) scores below every other.

Single-label only: a mean of one-hot classes has no multi-label form (an image of several
classes belongs to several means, and a distance gives no per-class decision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from .loader import eval_outputs

UNSCORED = -10.0  # below any squared distance of unit vectors (at most 4)


def class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, D) normalised means of normalised ``features``; zero rows for classes
    without samples."""
    feats = F.normalize(features, dim=1)
    sums = torch.zeros(n_classes, feats.shape[1], dtype=feats.dtype, device=feats.device)
    sums.index_add_(0, labels, feats)
    counts = torch.bincount(labels, minlength=n_classes).to(feats.dtype)[:, None]
    return F.normalize(sums / counts.clamp(min=1), dim=1)


def nme_scores(features: torch.Tensor, means: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``-||f/||f|| - mu_c||^2`` (B, n_classes); classes not ``known`` get UNSCORED."""
    dists = torch.cdist(F.normalize(features, dim=1), means).pow(2)
    return torch.where(known, -dists, torch.full_like(dists, UNSCORED))


class NMEClassifier(SupervisedPlugin):
    """Predicts by the nearest mean of exemplars: put it after the memory's plugin, so the
    means come from the updated memory. At evaluation the features the head receives are
    read by a forward hook (no extra pass) and ``mb_output`` becomes the NME scores over
    all classes; with an empty memory (``--memory 0``) the logits stay the scores."""

    def __init__(self, memory):
        super().__init__()
        self.memory = memory
        self.means = self.known = None
        self._features = self._hook = None

    def after_training_exp(self, strategy, **kwargs):
        buffer, model = self.memory.buffer, strategy.model
        n = strategy.info.num_classes
        if not len(buffer):
            self.means, self.known = None, None
            return
        feats = eval_outputs(model, buffer.eval(), strategy.eval_mb_size,
                             lambda x: model.features(x.to(strategy.device)).float())
        labels = buffer.targets.to(feats.device)
        self.means = class_means(feats, labels, n)
        self.known = torch.bincount(labels, minlength=n) > 0

    def before_eval(self, strategy, **kwargs):
        def keep(module, inputs, output):
            self._features = inputs[0]
        self._hook = strategy.model.head.register_forward_hook(keep)

    def after_eval_forward(self, strategy, **kwargs):
        if self.means is not None:
            strategy.mb_output = nme_scores(self._features.float(), self.means, self.known)
        self._features = None

    def after_eval(self, strategy, **kwargs):
        self._hook.remove()
        self._hook = None
