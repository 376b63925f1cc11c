"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2018) as an Avalanche plugin.

The loss adds ``alpha * L_old`` where L_old distils the previous session's model on the old
classes (those seen before the current session):

- single-label: Eq. (2) of the paper, knowledge distillation with temperature T,
  ``T^2 * KL(softmax(z_prev / T) || softmax(z / T))`` over the old classes' logits (T = 2);
- multi-label (adaptation, as in the MLCIL baselines of KRT): a sigmoid is the output of each
  class, so the distillation target of each old class is the previous model's sigmoid
  probability, and L_old is the binary cross-entropy to it, averaged over old classes.

Avalanche ships an LwF plugin, but it tracks classes through integer targets
(``classes_in_this_experience``), which multi-hot streams do not have.
"""
from __future__ import annotations

import torch.nn.functional as F
from avalanche.core import SupervisedPlugin


def kd_loss(logits, prev_logits, temperature: float):
    """Hinton-style distillation ``T^2 * KL(p_prev || p)`` with softened softmaxes."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    q = F.softmax(prev_logits / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature ** 2


def sigmoid_distillation(logits, prev_logits):
    """BCE of each old class's logit to the previous model's sigmoid probability."""
    return F.binary_cross_entropy_with_logits(logits, prev_logits.sigmoid())


class LwFPlugin(SupervisedPlugin):
    """Adds ``alpha * L_old`` (see module docstring) before every backward pass."""

    needs_previous_model = True

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0):
        super().__init__()
        self.alpha, self.temperature = alpha, temperature

    def before_backward(self, strategy, **kwargs):
        if strategy.prev_output is None or strategy.n_old == 0:
            return
        n = strategy.n_old
        new, old = strategy.mb_output[:, :n], strategy.prev_output[:, :n]
        if strategy.info.label_mode == "multi":
            term = sigmoid_distillation(new, old)
        else:
            term = kd_loss(new, old, self.temperature)
        strategy.loss += self.alpha * term


def soft_cross_entropy(logits, prev_logits, temperature: float):
    """``-1/B sum_b sum_c softmax(z_prev / T)_c log softmax(z / T)_c``: the distillation
    term of WA and BiC (PyCIL ``_KD_loss``), without the ``T^2`` factor."""
    q = F.softmax(prev_logits / temperature, dim=1)
    return -(q * F.log_softmax(logits / temperature, dim=1)).sum() / logits.shape[0]


class ProportionalKD(SupervisedPlugin):
    """``(1 - lambda) L_cls + lambda L_kd`` with ``lambda = n_old / n_seen`` (BiC, Wu et al.
    CVPR 2019, Eq. 3-4; kept by WA, Zhao et al. CVPR 2020). L_kd distils the previous
    model on the old classes: :func:`soft_cross_entropy` at temperature T (single-label),
    :func:`sigmoid_distillation` (multi-label, as ``LwFPlugin``)."""

    needs_previous_model = True

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        self.temperature = temperature

    def before_backward(self, strategy, **kwargs):
        if strategy.prev_output is None or strategy.n_old == 0:
            return
        n, lam = strategy.n_old, strategy.n_old / strategy.n_seen
        new, old = strategy.mb_output[:, :n], strategy.prev_output[:, :n]
        if strategy.info.label_mode == "multi":
            term = sigmoid_distillation(new, old)
        else:
            term = soft_cross_entropy(new, old, self.temperature)
        strategy.loss = (1 - lam) * strategy.loss + lam * term


class SummedSigmoidKD(SupervisedPlugin):
    """iCaRL's distillation (Rebuffi et al. CVPR 2017, Alg. 3, as the long-tailed CIL code's
    ``icarl.py`` criterion): ``weight * sum_{c old} BCE(sigmoid(z_c), sigmoid(z_prev_c))``,
    each class's term a batch mean, added to the classification loss."""

    needs_previous_model = True

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def before_backward(self, strategy, **kwargs):
        if strategy.prev_output is None or strategy.n_old == 0:
            return
        n = strategy.n_old
        term = n * sigmoid_distillation(strategy.mb_output[:, :n], strategy.prev_output[:, :n])
        strategy.loss = strategy.loss + self.weight * term
