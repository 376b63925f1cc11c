"""Logit adjustment by class counts: the one balancing mechanism of BSCE and gradient
reweighting.

- Single-label: the balanced softmax (Ren et al., NeurIPS 2020, Eq. 4; Jodelet et al.,
  arXiv:2103.12532, Eq. 3): cross-entropy on ``z + log n_c``. Any prior proportional to the
  counts (frequencies ``pi_c``, as gradient reweighting writes it) gives the same loss,
  since a softmax ignores a constant shift.
- Multi-label (the suite's adaptation): the balanced sigmoid, binary cross-entropy on
  ``z_c + log(n+_c / n-_c)`` over the supervised entries, ``n+`` and ``n-`` the supervised
  positives and negatives of class c. It is the single-label form for each class's own
  two-way softmax (positive vs negative).

Training only: predictions use the raw logits. Counts are guarded: a zero count is read as
1, so no log of zero is ever taken.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import masked_bce


def log_prior(positives: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """``log n_c`` (single-label: ``negatives`` None) or ``log(n+_c / n-_c)`` (multi-label),
    each count at least 1."""
    prior = positives.clamp(min=1).log()
    if negatives is not None:
        prior = prior - negatives.clamp(min=1).log()
    return prior


def logit_adjusted_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                        prior: torch.Tensor, label_mode: str) -> torch.Tensor:
    """Cross-entropy (single) or masked BCE (multi) on ``logits + prior`` (prior: (n_seen,))."""
    shifted = logits + prior[: logits.shape[1]]
    if label_mode == "multi":
        return masked_bce(shifted, targets, mask)
    return F.cross_entropy(shifted, targets)
