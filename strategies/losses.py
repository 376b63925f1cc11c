"""Classification losses of the training template.

Every loss takes ``(logits, targets, mask)`` restricted to the seen classes: ``logits``
(B, n_seen); ``targets`` (B, n_seen) multi-hot floats (multi-label) or (B,) class indices
(single-label); ``mask`` (B, n_seen) bool, True where an entry is labelled.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the labelled entries only.

    Unlabelled entries (task-level partial labels: old and future classes) contribute
    nothing: they are unknown, not negative.
    """
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (per_entry * mask).sum() / mask.sum().clamp(min=1)


def seen_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over all seen classes (the mask is not needed)."""
    return F.cross_entropy(logits, targets)


def default_loss(label_mode: str):
    """Masked BCE for multi-label streams, softmax CE over seen classes for single-label."""
    return masked_bce if label_mode == "multi" else seen_cross_entropy
