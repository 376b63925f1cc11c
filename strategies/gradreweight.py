"""Gradient reweighting with distribution-aware knowledge distillation (He & Zhu, "Gradient
Reweighting: Towards Imbalanced Class-Incremental Learning", CVPR 2024, arXiv:2402.18528;
official code JiangpengHe/imbalanced_cil, ``src/approach/DGR.py``), as in the official code:

- Classification: the logit-adjusted loss of strategies/balanced.py (``z + log pi``, pi the
  class frequencies of the current training set, memory included; raw logits at test).
- Distribution-aware KD (Sec. 3.4) on the old classes, :func:`dakd`, weighted by
  ``kd_weight * sqrt(n_old_total / n_new_total) * T^2`` (lambda_b = 0.7, T = 2), with
  ``n_old_total`` the original training count of the old classes and ``n_new_total`` the
  current session's count of the new ones.
- Only the classifier rows (weight and bias) are reweighted; the backbone gets the plain
  gradient of the summed loss. Phi_c accumulates, over the session, the L2 norm of class
  c's classification-gradient row (Eq. 7); alpha_c = min Phi / Phi_c (Eq. 8), taken within
  the old and within the new classes separately after the first session; with
  ratio = mean Phi_new / mean Phi_old, old rows are scaled by min(1, ratio) and new rows by
  min(1, ratio * exp(-n_old_total / (n_old_total + n_new_total))) (Eq. 9-10); the KD
  gradient of the old rows is scaled by beta = ||alpha * |g_ce| ||_2 / || |g_kd| ||_2
  (Eq. 11-12), so that a row's gradient is alpha g_ce + beta g_kd (old) or alpha g_ce (new).

Differences from the official loop: everything stays on the device and is vectorised over
rows (no per-step host sync). g_ce and g_kd are each taken by their own ``autograd.grad``,
as in the official code, but with respect to the (float32) logits, and the rows follow in
float32 as ``G^T f`` and ``sum_b G`` from the head's input features ``f``, captured by a
forward hook during the training forward: under ``amp`` the head's own backward runs in
bf16/fp16, and reading g_kd as the full gradient minus g_ce there cancelled (1% relative
error, over 100% when the KD part is small, then amplified by beta); this way both parts are
float32-exact for the features the model computed, and no loss scale is involved. Without
``amp`` the numbers are those of ``autograd.grad`` on the head up to rounding. A class
whose Phi is still 0 (possible only on multi-label streams, when none of its entries has
been supervised yet) gets alpha = 1 and is left out of the minimum.

Multi-label (our adaptation): the balanced sigmoid of balanced.py as the classification
loss, the same row reweighting with Phi from the classification gradient rows, and DAKD
with per-class binary distributions (sigmoid / log-sigmoid for softmax / log-softmax);
counts are labelled positives.

Ablation switches (ours, off the paper's defaults): ``adjust=False`` drops the logit
adjustment (plain CE / BCE), ``reweight=False`` leaves the head's gradient as computed
(alpha = beta = 1), ``kd="plain"`` replaces DAKD by plain temperature KD (H = 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from .balanced import log_prior, logit_adjusted_loss

# Guards divisions by a quantity that is zero only when its numerator is too.
TINY = 1e-12


def normalised_entropy(removed: torch.Tensor) -> torch.Tensor:
    """H of the official ``measure_imbalance``: entropy of ``removed + 0.001`` (as a
    distribution) divided by log(n); 1 for a single class."""
    if removed.numel() < 2:
        return removed.new_ones(())
    p = removed + 0.001
    p = p / p.sum()
    return -(p * p.log()).sum() / math.log(removed.numel())


def dakd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, removed: torch.Tensor,
         temperature: float, label_mode: str = "single") -> torch.Tensor:
    """L_DAKD (Sec. 3.4; the official ``_DAKD``), a batch mean, on old-class logits (B, n_old).

    ``removed`` (n_old,): original training count minus the count kept in memory. With
    H = :func:`normalised_entropy` (removed), pi' = removed / sum(removed), L2-normalised, and
    z_mix = z * pi' + z_T * (1 - pi'):
    ``L = -1/B sum_b sum_c q_c [H log p(z)_c + (1 - H) log p(z_mix)_c]``, q = p(z_T), p the
    softmax at temperature T, or (``label_mode="multi"``, ours) each class's binary
    distribution (sigmoid at T, both outcomes summed). When nothing was removed pi' is set
    to 0 (the official code divides by zero): then H = 1 and L is plain temperature KD.
    """
    h = normalised_entropy(removed)
    share = removed / removed.norm().clamp(min=TINY)
    mixed = student_logits * share + teacher_logits * (1 - share)
    if label_mode == "multi":
        q = torch.sigmoid(teacher_logits / temperature)

        def log_likelihood(z):
            return q * F.logsigmoid(z / temperature) + (1 - q) * F.logsigmoid(-z / temperature)
    else:
        q = torch.softmax(teacher_logits / temperature, dim=1)

        def log_likelihood(z):
            return q * F.log_softmax(z / temperature, dim=1)
    per_class = h * log_likelihood(student_logits) + (1 - h) * log_likelihood(mixed)
    return -per_class.sum() / student_logits.shape[0]


def class_balance(phi: torch.Tensor) -> torch.Tensor:
    """alpha_c = min Phi / Phi_c over the classes with Phi > 0 (1 for the others)."""
    positive = phi > 0
    floor = torch.where(positive, phi, torch.full_like(phi, math.inf)).min()
    return torch.where(positive, floor / phi.clamp(min=TINY), torch.ones_like(phi))


def row_weights(phi: torch.Tensor, n_old: int, attenuation: torch.Tensor | float) -> torch.Tensor:
    """alpha (n_seen,) from the accumulated row norms ``phi``: :func:`class_balance` over all
    classes in the first session; later within old and within new classes, old rows times
    min(1, ratio) and new rows times min(1, ratio * attenuation), ratio = mean Phi_new /
    mean Phi_old."""
    if n_old == 0:
        return class_balance(phi)
    old, new = phi[:n_old], phi[n_old:]
    ratio = new.mean() / old.mean().clamp(min=TINY)
    return torch.cat([class_balance(old) * ratio.clamp(max=1),
                      class_balance(new) * (ratio * attenuation).clamp(max=1)])


def kd_balance(alpha: torch.Tensor, ce_norms: torch.Tensor, kd_norms: torch.Tensor) -> torch.Tensor:
    """beta = || alpha * |g_ce| ||_2 / || |g_kd| ||_2, norms of rows (seen and old classes)."""
    return (alpha * ce_norms).norm() / kd_norms.norm().clamp(min=TINY)


class GradientReweighting(SupervisedPlugin):
    """The method as a plugin; called as ``criterion(logits, targets, mask)`` it is the
    logit-adjusted classification loss with the current session's prior."""

    needs_previous_model = True

    def __init__(self, label_mode: str, kd_weight: float = 0.7, temperature: float = 2.0,
                 adjust: bool = True, reweight: bool = True, kd: str = "dakd"):
        super().__init__()
        self.label_mode = label_mode
        self.kd_weight, self.temperature = kd_weight, temperature
        # ablation switches: logit adjustment, classifier-row reweighting, DAKD or plain KD
        self.adjust, self.reweight, self.kd = adjust, reweight, kd
        self.original: torch.Tensor | None = None  # each class's count in its own session
        self.prior = self.phi = self.removed = None
        self.attenuation = self.kd_scale = None
        self._ce_grad = self._kd_grad = self._hook = None
        self._kept: dict = {}  # the head's input features of the training forward

    def before_training_exp(self, strategy, **kwargs):
        counts, n_old, n = strategy.class_counts, strategy.n_old, strategy.n_seen
        if self.original is None:
            self.original = torch.zeros_like(counts)
        self.original[n_old:n] = counts[n_old:n]
        negatives = strategy.class_negatives if self.label_mode == "multi" else None
        self.prior = log_prior(counts, negatives)[:n]
        if not self.adjust:
            self.prior = torch.zeros_like(self.prior)
        self.phi = counts.new_zeros(n)
        self.removed = (self.original[:n_old] - counts[:n_old]).clamp(min=0)
        if self.kd == "plain":  # nothing removed: H = 1, plain temperature KD
            self.removed = torch.zeros_like(self.removed)
        old_total, new_total = self.original[:n_old].sum(), counts[n_old:n].sum().clamp(min=1)
        self.attenuation = torch.exp(-old_total / (old_total + new_total))
        self.kd_scale = self.kd_weight * self.temperature ** 2 * (old_total / new_total).sqrt()

    def __call__(self, logits, targets, mask):
        return logit_adjusted_loss(logits, targets, mask, self.prior, self.label_mode)

    def before_forward(self, strategy, **kwargs):
        """Keep the head's input features of the training forward (for the float32 rows)."""
        self._release_hook()
        if self.reweight:
            kept = self._kept

            def keep(module, args, output):
                kept["features"] = args[0]

            self._hook = strategy.model.head.register_forward_hook(keep)

    def after_forward(self, strategy, **kwargs):
        self._release_hook()

    def _release_hook(self):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def before_backward(self, strategy, **kwargs):
        n_old, logits = strategy.n_old, strategy.mb_output
        if self.reweight:
            self._ce_grad = _logit_grad(strategy.loss, logits)
        if n_old == 0:
            return
        kd = self.kd_scale * dakd(logits[:, :n_old], strategy.prev_output[:, :n_old],
                                  self.removed, self.temperature, self.label_mode)
        if self.reweight:
            self._kd_grad = _logit_grad(kd, logits)
        strategy.loss = strategy.loss + kd

    def after_backward(self, strategy, **kwargs):
        if not self.reweight:
            return
        n_old, n = strategy.n_old, strategy.n_seen
        head = strategy.model.head
        weight, bias = head.weight.grad, head.bias.grad
        features = self._kept.pop("features").float()
        ce_w, ce_b = _head_rows(self._ce_grad[:, :n], features)
        ce_norms = ce_w.norm(dim=1)
        self.phi += ce_norms
        alpha = row_weights(self.phi, n_old, self.attenuation)
        new_w, new_b = alpha[:, None] * ce_w, alpha * ce_b
        if n_old:
            kd_w, kd_b = _head_rows(self._kd_grad[:, :n_old], features)
            beta = kd_balance(alpha, ce_norms, kd_w.norm(dim=1))
            new_w[:n_old] += beta * kd_w
            new_b[:n_old] += beta * kd_b
        self._ce_grad = self._kd_grad = None
        weight[:n] = new_w.to(weight.dtype)
        bias[:n] = new_b.to(bias.dtype)


def _logit_grad(loss: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """d loss / d logits (float32, as the logits), zeros where the loss does not use them."""
    grad, = torch.autograd.grad(loss, logits, retain_graph=True, allow_unused=True)
    return torch.zeros_like(logits) if grad is None else grad


def _head_rows(logit_grad: torch.Tensor, features: torch.Tensor):
    """The gradient of the linear head's weight and bias rows from d loss / d logits
    (B, k) and the head's input (B, D), in float32: ``(G^T f, sum_b G)``."""
    return logit_grad.float().T @ features, logit_grad.float().sum(0)
