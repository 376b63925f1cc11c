"""Classification losses of the training template, and the asymmetric loss (ASL).

Every loss takes ``(logits, targets, mask)`` restricted to the seen classes: ``logits``
(B, n_seen); ``targets`` (B, n_seen) multi-hot floats (multi-label) or (B,) class indices
(single-label); ``mask`` (B, n_seen) bool, True where an entry is supervised.

Which unlabelled entries a multi-label loss supervises as negatives is the template's
``negatives`` option (:func:`supervised_mask`): ``labelled`` (only the labelled entries; an
unlabelled entry is unknown), ``seen`` (every seen class not labelled positive is a
negative, as the 0s of KRT's label vectors are) or ``session`` (the labelled entries plus
the current session's columns, as in CSC).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .options import FOCAL_GRADS, NEGATIVES


def supervised_mask(mask: torch.Tensor, negatives: str, n_old: int) -> torch.Tensor:
    """The entries a multi-label loss supervises, from the labelled-entry ``mask``
    (B, n_seen) and the ``negatives`` option (see the module docstring)."""
    if negatives == "labelled":
        return mask
    if negatives == "seen":
        return torch.ones_like(mask)
    if negatives == "session":
        current = torch.zeros_like(mask)
        current[:, n_old:] = True
        return mask | current
    raise ValueError(f"unknown negatives {negatives!r}; accepted: {', '.join(NEGATIVES)}")


def masked_mean(per_entry: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_entry`` over the entries of ``mask`` (0 when none is)."""
    return (per_entry * mask).sum() / mask.sum().clamp(min=1)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the supervised entries only.

    Unsupervised entries (task-level partial labels: old and future classes) contribute
    nothing: they are unknown, not negative.
    """
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return masked_mean(per_entry, mask)


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *,
                    gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                    neg_weight: float = 1.0, focal_grad: str = "full") -> torch.Tensor:
    """The asymmetric loss (ASL; Ridnik et al., ICCV 2021, Eq. 1-4), averaged over the
    supervised entries of ``mask``.

    With p = sigmoid(z) and the shifted probability p_m = max(p - clip, 0):
    ``L = -[ y (1-p)^gamma_pos log p + neg_weight (1-y) p_m^gamma_neg log(1 - p_m) ]``.
    ``focal_grad``: ``full`` keeps the focusing weights ``(1-p)^gamma_pos`` and
    ``p_m^gamma_neg`` in the graph (the loss as written); ``detached`` treats them as constants,
    as the official training scripts do (ASL's ``train.py`` and PSD's ``dis_B_cpsd.py`` pass
    ``disable_torch_grad_focal_loss=True``): the same loss value, a smaller gradient on
    negatives (its ``gamma_neg p_m^(gamma_neg-1) log(1-p_m)`` term is dropped). With
    ``gamma_neg = gamma_pos = clip = 0`` and ``neg_weight = 1`` it is :func:`masked_bce`.
    ``neg_weight`` (ours) scales the negative part, for losses that emphasise negatives
    (RebLL's AKD). The reference code sums over entries; here the mean over supervised
    entries keeps the scale of the other losses, so weights between terms stay comparable.
    """
    if focal_grad not in FOCAL_GRADS:
        raise ValueError(f"unknown focal_grad {focal_grad!r}; accepted: {', '.join(FOCAL_GRADS)}")
    log_p = F.logsigmoid(logits)
    p = log_p.exp()
    if clip > 0:
        p_m = (p - clip).clamp(min=0)
        log_not_p_m = torch.log1p(-p_m).clamp(min=-100)  # log(1 - p_m), as BCE clamps
    else:
        p_m, log_not_p_m = p, F.logsigmoid(-logits)
    focus = (lambda w: w.detach()) if focal_grad == "detached" else (lambda w: w)
    positive = targets * log_p
    if gamma_pos:
        positive = positive * focus((1 - p) ** gamma_pos)
    negative = (1 - targets) * log_not_p_m
    if gamma_neg:
        negative = negative * focus(p_m ** gamma_neg)
    return masked_mean(-(positive + neg_weight * negative), mask)


def seen_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over all seen classes (the mask is not needed)."""
    return F.cross_entropy(logits, targets)


def default_loss(label_mode: str):
    """Masked BCE for multi-label streams, softmax CE over seen classes for single-label."""
    return masked_bce if label_mode == "multi" else seen_cross_entropy
