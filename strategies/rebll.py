"""RebLL (Du et al., "Rebalancing Multi-Label Class-Incremental Learning", AAAI 2025,
arXiv:2408.12161): asymmetric knowledge distillation (AKD) and online relabeling (OR).

A reconstruction from the paper's description: the authors released no code and the paper's
exact equations are not available, so every unknown is a named hyperparameter (see
methods/rebll.py) and every formula lives in this module, to be corrected in one place.
With p = sigmoid(z) of the model being trained and q = sigmoid of the frozen previous-session
model:

- AKD, classification part: the asymmetric loss of losses.py over the supervised entries
  (which unlabelled entries are negatives is the template's ``negatives``),
  ``L_cls = -[ y (1-p)^gamma_pos log p + w_neg (1-y) p_m^gamma_neg log(1 - p_m) ]``,
  ``p_m = max(p - clip, 0)``; plain ASL (gamma_neg 4, gamma_pos 0, clip 0.05, w_neg 1) is one
  setting of it.
- AKD, distillation part (:func:`akd_distillation`), on the old classes:
  ``L_kd = mean over entries of w * BCE(p, q)``, ``w = exp(-lambda c(q))``
  (:func:`decay_weight`), so that the teacher outputs that ``c`` calls confident count
  less; ``adaptive`` scales lambda by the batch's mean ``c(q)``. The total loss is
  ``L_cls + mu * L_kd`` (:class:`AKDPlugin` adds the second term). ``c`` is the
  ``kd_weight`` form (:func:`confidence`), the paper's words read three ways:

  - ``symmetric``: ``c = |2q - 1|``, confidence either way; q and 1 - q weigh the same
    (an "adaptive exponential decay" of overconfident outputs, but nothing asymmetric);
  - ``negative``: ``c = q``, only confident *positive* teacher outputs decay, teacher
    negatives (q -> 0) keep weight 1: the distillation "emphasises negatives", the
    asymmetric reading of "asymmetric KD" that fits the paper's motivation (partial labels
    miss negatives of old classes, which the teacher's low outputs supply);
  - ``positive``: ``c = 1 - q``, the mirror image, as a control.
- OR (:func:`relabel`, :class:`RelabelPlugin`), on the session x session label-block
  matrix: a sample of session j carries only its own block. Its missing blocks of sessions
  after j (above the diagonal) are filled with the current model's detached predictions,
  its blocks of sessions before j (below the diagonal) with the previous model's; its own
  block keeps its ground truth. Labels are hard (``p >= tau``) or soft (the probability).
  ``online`` relabels each batch from the batch's own forward pass (no extra pass over the
  current model); ``end_of_session`` relabels the stored memory once after each session,
  with the trained model, and the filled entries then count as labelled.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from .loader import eval_outputs
from .options import KD_WEIGHTS, OR_MODES, OR_SCOPES


def confidence(q: torch.Tensor, form: str = "symmetric") -> torch.Tensor:
    """What AKD's decay counts as the teacher's confidence in q (see the module docstring):
    ``symmetric`` |2q - 1|, ``negative`` q, ``positive`` 1 - q; each in [0, 1]."""
    if form == "symmetric":
        return (2 * q - 1).abs()
    if form == "negative":
        return q
    if form == "positive":
        return 1 - q
    raise ValueError(f"unknown kd_weight {form!r}; accepted: {', '.join(KD_WEIGHTS)}")


def decay_weight(q: torch.Tensor, lam, form: str = "symmetric") -> torch.Tensor:
    """AKD's distillation weight ``exp(-lam c(q))``, c = :func:`confidence`: 1 where the
    teacher is not confident in ``form``'s sense, falling as it grows confident."""
    return torch.exp(-lam * confidence(q, form))


def akd_distillation(logits: torch.Tensor, prev_logits: torch.Tensor, lam: float,
                     adaptive: bool = False, form: str = "symmetric") -> torch.Tensor:
    """Mean over the entries of ``w * BCE(sigmoid(logits), q)``, q = sigmoid(prev_logits),
    w = :func:`decay_weight` of ``form`` (lam scaled by the mean confidence when
    ``adaptive``). With lam = 0 it is the plain sigmoid distillation of LwF's multi-label
    form."""
    q = prev_logits.sigmoid()
    c = confidence(q, form)
    if adaptive:
        lam = lam * c.mean()
    bce = F.binary_cross_entropy_with_logits(logits, q, reduction="none")
    return (torch.exp(-lam * c) * bce).mean()


def column_sessions(sessions: list[list[int]]) -> torch.Tensor:
    """The session of each class column (C,), from the stream's classes per session."""
    return torch.cat([torch.full((len(c),), t, dtype=torch.long) for t, c in enumerate(sessions)])


def relabel(targets: torch.Tensor, mask: torch.Tensor, row_session: torch.Tensor,
            rows: torch.Tensor, current: torch.Tensor, previous, col_session: torch.Tensor,
            n_seen: int, soft: bool, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """OR's labels for a batch: ``targets``, ``mask`` (B, C) with the unlabelled entries of
    the seen classes of ``rows`` (B,) bool filled, and marked labelled.

    An entry of a row of session ``row_session`` in a column of a later session is filled
    from ``current`` (B, C), the current model's probabilities; in a column of an earlier
    session from ``previous`` (the previous model's, or None: left as it is).
    """
    later = col_session[None, :] > row_session[:, None]
    free = ~mask & rows[:, None]
    free[:, n_seen:] = False
    from_current = free & later
    from_previous = free & (col_session[None, :] < row_session[:, None])
    if previous is None:
        from_previous = torch.zeros_like(from_previous)
        previous = current
    probs = torch.where(later, current, previous)
    labels = probs if soft else (probs >= tau).to(targets.dtype)
    filled = from_current | from_previous
    return torch.where(filled, labels, targets), mask | filled


def probabilities(strategy, model: torch.nn.Module, data) -> torch.Tensor:
    """``model``'s sigmoid outputs (N, C) on ``data`` (its eval transforms), in eval mode."""
    def forward(x):
        with torch.autocast(strategy.device.type, dtype=strategy.amp_dtype,
                            enabled=strategy.amp_dtype is not None):
            return model(x.to(strategy.device)).float().sigmoid()

    return eval_outputs(model, data.eval(), strategy.eval_mb_size, forward)


class AKDPlugin(SupervisedPlugin):
    """Adds ``mu * L_kd`` (:func:`akd_distillation` on the old classes) before backward."""

    needs_previous_model = True

    def __init__(self, mu: float, lam: float, adaptive: bool, form: str = "symmetric"):
        super().__init__()
        if form not in KD_WEIGHTS:
            raise ValueError(f"unknown kd_weight {form!r}; accepted: {', '.join(KD_WEIGHTS)}")
        self.mu, self.lam, self.adaptive, self.form = mu, lam, adaptive, form

    def before_backward(self, strategy, **kwargs):
        if not self.mu or strategy.prev_output is None or strategy.n_old == 0:
            return
        n = strategy.n_old
        strategy.loss += self.mu * akd_distillation(
            strategy.mb_output[:, :n], strategy.prev_output[:, :n], self.lam, self.adaptive,
            self.form)


class RelabelPlugin(SupervisedPlugin):
    """Online relabeling (see the module docstring). ``scope``: the rows relabeled online,
    ``memory`` (rows of an earlier session) or ``all``; ``memory``: the LabelMemory that
    ``end_of_session`` relabels.

    For the memory-label diagnostics (benchmarks/diagnostics.py), :meth:`trained_labels`
    gives the labels online OR trains the memory rows on.
    """

    def __init__(self, mode: str, scope: str, soft: bool, tau: float, memory=None):
        super().__init__()
        if mode not in OR_MODES or scope not in OR_SCOPES:
            raise ValueError(f"or_mode {mode!r} / or_scope {scope!r}: expected "
                             f"{'|'.join(OR_MODES)} and {'|'.join(OR_SCOPES)}")
        self.mode, self.scope, self.soft, self.tau = mode, scope, soft, tau
        self.memory = memory
        self.needs_previous_model = mode != "off"
        self.col_session = None

    def before_training_exp(self, strategy, **kwargs):
        self.col_session = column_sessions(strategy.info.sessions).to(strategy.device)

    def after_forward(self, strategy, **kwargs):
        if self.mode != "online":
            return
        session = strategy.mb_session
        rows = session < strategy.session if self.scope == "memory" else torch.ones_like(
            session, dtype=torch.bool)
        previous = strategy.prev_output
        strategy.mbatch[1], strategy.mbatch[2] = relabel(
            strategy.mb_y, strategy.mb_mask, session, rows, strategy.mb_output.detach().sigmoid(),
            None if previous is None else previous.sigmoid(), self.col_session,
            strategy.n_seen, self.soft, self.tau)

    def after_training_exp(self, strategy, **kwargs):
        """``end_of_session``: relabel the stored memory (updated by the memory plugin,
        which must come first) with the trained model and the previous one."""
        if self.mode != "end_of_session" or not len(self.memory.buffer):
            return
        buffer = self.memory.buffer
        targets, mask = self._relabel(strategy, buffer, torch.ones(len(buffer), dtype=torch.bool))
        self.memory.relabel(buffer.index, targets, mask)

    def trained_labels(self, strategy, data) -> tuple[torch.Tensor, torch.Tensor]:
        """The labels online OR gives the memory rows ``data`` (all of an earlier session)
        with the session's final model and the previous one; other modes train on the
        stored labels."""
        if self.mode != "online":
            return data.targets, data.mask
        return self._relabel(strategy, data, data.session < strategy.session)

    def _relabel(self, strategy, data, rows):
        current = probabilities(strategy, strategy.model, data).cpu()
        previous = None
        if strategy.prev_model is not None:
            previous = probabilities(strategy, strategy.prev_model, data).cpu()
        return relabel(data.targets, data.mask, data.session, rows, current, previous,
                       self.col_session.cpu(), strategy.n_seen, self.soft, self.tau)
