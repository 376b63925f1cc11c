"""EEIL's mechanisms (Castro et al., "End-to-End Incremental Learning", ECCV 2018), as the
long-tailed CIL code (xialeiliu/Long-Tailed-CIL ``src/approach/eeil.py``, FACIL's EEIL)
builds them:

- distillation (Sec. 3.2, Eq. 1-2 as that code writes it): for each old session's block of
  classes, the binary cross-entropy between the softmaxes at temperature T of the current
  and the previous model's logits of that block, summed over blocks, times ``lamb``
  (:func:`block_distillation`, :class:`BlockDistillation`);
- balanced fine-tuning (Sec. 4, "balanced fine-tuning"), after each session but the
  first: the memory as it was trained (old classes' exemplars) plus as many samples of the
  session's own data, drawn at random (:func:`balanced_subset`: the reference's
  ``torch.randperm(len(trn_dataset))[:len(exemplars)]``), trained with the same loss for
  ``epochs`` epochs at ``lr_factor`` times the recipe's lr, before the memory update
  (:class:`BalancedFinetuning`).

Departures: the reference's unbalanced stage distils only the blocks of sessions
``0..t-2`` (``range(t - 1)``), skipping the last old session (``range(t)`` only in the
fine-tuning); the suite distils every old session's block in both stages, as the paper
describes. The subset draws from a seeded generator (the reference: torch's global one).
The paper subsamples the new data per class; the reference (followed) draws the subset
from the whole session, so the new classes keep their imbalance. The fine-tuning's lr is
constant (the reference applies its patience schedule). Gradient noise (the reference's
``--noise-grad``, off by default) is not implemented. Multi-label (ours): the
distillation is each old class's sigmoid distillation (BCE to the previous model's
probability), as ``lwf``; the subset is drawn among the session's images alike.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from .distillation import sigmoid_distillation
from .template import Diverged


def block_distillation(logits: torch.Tensor, prev_logits: torch.Tensor, blocks,
                       temperature: float) -> torch.Tensor:
    """``sum_b BCE(softmax(z_b / T), softmax(z_prev_b / T))`` over the class ``blocks``
    (lists of class indices), each BCE a mean over the block's entries and the batch."""
    total = logits.new_zeros(())
    for block in blocks:
        p = F.softmax(logits[:, block] / temperature, dim=1)
        q = F.softmax(prev_logits[:, block] / temperature, dim=1)
        total = total + F.binary_cross_entropy(p, q)
    return total


def balanced_subset(n_session: int, n_memory: int, generator: torch.Generator) -> torch.Tensor:
    """Rows of the session's data joining the memory in the balanced fine-tuning: the first
    ``n_memory`` of a random permutation (all rows if fewer)."""
    return torch.randperm(n_session, generator=generator)[:n_memory]


class BlockDistillation(SupervisedPlugin):
    """Adds ``lamb * block_distillation`` over every old session's block (single-label) or
    ``lamb *`` each old class's sigmoid distillation (multi-label) to the loss."""

    needs_previous_model = True

    def __init__(self, lamb: float = 1.0, temperature: float = 2.0):
        super().__init__()
        self.lamb, self.temperature = lamb, temperature

    def before_backward(self, strategy, **kwargs):
        if strategy.prev_output is None or strategy.n_old == 0:
            return
        out, prev = strategy.mb_output, strategy.prev_output
        if strategy.info.label_mode == "multi":
            n = strategy.n_old
            term = sigmoid_distillation(out[:, :n], prev[:, :n])
        else:
            blocks = strategy.info.sessions[:strategy.session]
            term = block_distillation(out, prev, blocks, self.temperature)
        strategy.loss = strategy.loss + self.lamb * term


class BalancedFinetuning(SupervisedPlugin):
    """EEIL's balanced fine-tuning stage. Put it before the memory's plugin (it trains on
    the memory as the session had it). It runs the template's own training epochs (same
    loss, plugins' terms and hooks per iteration), with the optimizer's state cleared and
    its lr scaled by ``lr_factor`` for the stage. The session's notes keep ``eeil_ft_s``
    (the stage's time), ``eeil_ft_samples`` and ``eeil_ft_loss`` (mean loss per epoch)."""

    def __init__(self, memory_plugin, epochs: int = 40, lr_factor: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.memory_plugin = memory_plugin
        self.epochs, self.lr_factor = epochs, lr_factor
        self.generator = generator or torch.Generator()

    def balanced_set(self, strategy):
        """The trained memory plus as many random samples of the session's data (None
        without a memory)."""
        memory = self.memory_plugin.trained_memory
        if memory is None or not len(memory):
            return None
        session = strategy.experience.dataset.train()
        rows = balanced_subset(len(session), len(memory), self.generator)
        return memory.train().concat(session.subset(rows))

    def after_training_exp(self, strategy, **kwargs):
        if strategy.n_old == 0 or self.epochs == 0:
            return
        data = self.balanced_set(strategy)
        if data is None:
            return
        start = time.perf_counter()
        losses = run_epochs(strategy, data, self.epochs, self.lr_factor)
        strategy.notes.update(eeil_ft_s=time.perf_counter() - start,
                              eeil_ft_samples=len(data), eeil_ft_loss=losses)


def run_epochs(strategy, data, epochs: int, lr_factor: float) -> list[float]:
    """``epochs`` of the template's training loop on ``data``, the optimizer's state cleared
    and its lr times ``lr_factor``; the session's dataset, loader, lr and training state
    are restored afterwards. Returns the mean loss of each epoch (Diverged if not finite)."""
    saved = strategy.adapted_dataset, strategy.dataloader, strategy.class_counts, \
        strategy.class_negatives, strategy.replay_memory
    lrs = [group["lr"] for group in strategy.optimizer.param_groups]
    was_training = strategy.model.training
    strategy.optimizer.state.clear()
    for group in strategy.optimizer.param_groups:
        group["lr"] *= lr_factor
    losses = []
    try:
        strategy.model.train()
        strategy.adapted_dataset = data
        strategy.replay_memory = None  # one class-balanced set, shuffled whole (any replay_batch)
        strategy.make_train_dataloader()
        for _ in range(epochs):
            strategy._loss_sum = strategy._make_empty_loss()
            strategy.training_epoch()
            mean = float(strategy._loss_sum) / max(1, len(strategy.dataloader))
            if mean != mean or mean in (float("inf"), float("-inf")):
                raise Diverged(f"training loss became {mean} in a second stage of session "
                               f"{strategy.session}")
            losses.append(mean)
    finally:
        for group, lr in zip(strategy.optimizer.param_groups, lrs):
            group["lr"] = lr
        strategy.optimizer.state.clear()
        strategy.adapted_dataset, strategy.dataloader, strategy.class_counts, \
            strategy.class_negatives, strategy.replay_memory = saved
        strategy.model.train(was_training)
    return losses
