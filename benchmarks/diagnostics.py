"""Diagnostics that need what only the measurement side knows: the true training labels.

Memory-label rates: after each session, the false-positive and false-negative rates of the
labels a method's replay memory was trained on, against the images' full true labels
(``BuiltStream.train_labels``, never handed to a method), over the classes seen so far.
An unlabelled entry reads as a negative; a soft label counts as its probability (expected
counts), so hard labels give the usual rates. Multi-label streams only.

The protocol, for any strategy plugin:

- a plugin with a memory exposes ``trained_memory``: the memory rows (a LabelledSet) that
  joined the last session's training data, with their stored labels, or None
  (strategies/memory.py's MemoryPlugin does);
- a plugin that changes the labels the loss sees exposes ``trained_labels(strategy, data)
  -> (targets, mask)``: the labels its training gave the rows of ``data`` (e.g. RebLL's
  relabeling); such plugins apply in their order in ``strategy.plugins``.

What the memory held (any label mode): after each session, its samples, its labelled
positives per seen class, and how balanced these are: ``balance``, the KL divergence (nats)
of the per-class positive counts, normalised, from the uniform distribution over the seen
classes (0: every seen class has as many; log(n_seen): one class has them all), and
``ratio``, the largest count over the smallest (None when a seen class has none).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from strategies.memory import MemoryPlugin
from strategies.template import label_counts


def label_rates(labels: torch.Tensor, true: torch.Tensor) -> dict:
    """FPR and FNR in % of ``labels`` (N, C) in [0, 1] against binary ``true`` (N, C):
    ``FPR = sum (1 - true) labels / sum (1 - true)``, ``FNR = sum true (1 - labels) / sum
    true`` (None where the denominator is 0)."""
    true = true.float()
    negatives, positives = (1 - true).sum(), true.sum()
    fpr = 100 * float(((1 - true) * labels).sum() / negatives) if negatives else None
    fnr = 100 * float((true * (1 - labels)).sum() / positives) if positives else None
    return {"FPR": fpr, "FNR": fnr}


def memory_label_rates(strategy, train_labels: torch.Tensor) -> Optional[dict]:
    """``{"FPR", "FNR", "rows"}`` of the memory the last session trained on (see the module
    docstring), over the seen classes; None without a memory or on single-label streams."""
    if strategy.info.label_mode != "multi":
        return None
    memories = [p.trained_memory for p in strategy.plugins
                if getattr(p, "trained_memory", None) is not None]
    if not memories:
        return None
    data = memories[0]
    for plugin in strategy.plugins:
        if hasattr(plugin, "trained_labels"):
            targets, mask = plugin.trained_labels(strategy, data)
            data = data.with_rows(data.index, targets, mask, data.session)
    n = strategy.n_seen
    labels = (data.targets * data.mask)[:, :n].float()
    return {**label_rates(labels, train_labels[data.index, :n]), "rows": len(data)}


def memory_balance(counts: list[int]) -> dict:
    """``{"balance", "ratio"}`` of per-class positive ``counts`` (see the module docstring;
    both None for an empty memory)."""
    total = sum(counts)
    if not counts or total <= 0:
        return {"balance": None, "ratio": None}
    n = len(counts)
    kl = sum(c / total * math.log(c / total * n) for c in counts if c > 0)
    return {"balance": max(0.0, kl), "ratio": max(counts) / min(counts) if min(counts) else None}


def last_memory(sessions: list[dict]) -> dict:
    """The summary entries of the last session's memory: ``last_mem_FPR``, ``last_mem_FNR``
    (multi-label) and ``last_mem_balance`` (empty without a memory)."""
    held = sessions[-1].get("memory") if sessions else None
    balance = {"last_mem_balance": held["balance"]} if held and held.get("balance") is not None \
        else {}
    return {**last_memory_rates(sessions), **balance}


def last_memory_rates(sessions: list[dict]) -> dict:
    """The summary entries ``last_mem_FPR`` and ``last_mem_FNR`` from the records' sessions
    (empty when the last session has no memory rates)."""
    rates = sessions[-1].get("memory_labels") if sessions else None
    return {f"last_mem_{k}": rates[k] for k in ("FPR", "FNR")} if rates else {}


def memory_held(strategy) -> Optional[dict]:
    """What the strategy's replay memory holds after a session: samples, labelled positives
    per seen class, their balance and ratio, and the selection with all its options (None
    without a memory)."""
    for plugin in strategy.plugins:
        if isinstance(plugin, MemoryPlugin):
            memory, buffer = plugin.memory, plugin.memory.buffer
            if not len(buffer):
                per_class = [0] * strategy.n_seen
            else:
                counts, _ = label_counts(buffer, strategy.info.num_classes,
                                         strategy.info.label_mode)
                per_class = counts[:strategy.n_seen].long().tolist()
            return {"size": len(buffer), "per_class": per_class, **memory_balance(per_class),
                    "selection": memory.description}
    return None
