"""A replay memory for multi-hot (and single) labels, on Avalanche's storage-policy interface.

Avalanche's class-balanced buffer groups samples by integer targets, which multi-hot rows
are not, and walks the dataset in Python. Here selection is vectorised over label tensors:

- budget: ``per_class`` (``size`` samples for each seen class) or ``total`` (``size``
  samples in all, ``size // n_seen`` per class, older classes shrunk as classes arrive);
- selection: ``random`` or ``herding`` (iCaRL, Rebuffi et al. CVPR 2017, Alg. 4: greedily
  pick the sample whose addition keeps the mean of the selected L2-normalised features
  closest to the class mean);
- each class keeps a priority-ordered list of the samples of its session labelled with it;
  the buffer is their union with images deduplicated: an image kept for classes of two
  sessions appears once, with the union of its two label blocks and masks. Labels are kept
  as the sample had them (partial), so methods may relabel them online.

:class:`MemoryPlugin` adds the buffer to each session's training data (as in KRT and RebLL,
the memory joins the training set) and updates it after the session. Its ``labels`` option:
``own`` (default; the strict task-level protocol RebLL's problem statement assumes) keeps
each exemplar's own session's labels; ``forward`` (the reference KRT code) gives exemplars
the ground truth of the classes learned after them, session by session: in session t an
exemplar gets its labels of t's classes from t's training set, which holds every image
showing one of them (an image absent from it shows none: all 0, labelled).
"""
from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.storage_policy import ExemplarsBuffer

from .loader import eval_outputs
from .options import MEMORY_LABELS


def herding_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows of ``features`` (N, D) chosen by herding, in selection order."""
    feats = torch.nn.functional.normalize(features, dim=1)
    mean = feats.mean(0)
    chosen = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(feats), dtype=torch.bool)
    for step in range(1, min(k, len(feats)) + 1):
        dist = ((mean - (running + feats) / step) ** 2).sum(1)
        dist[~available] = float("inf")
        pick = int(dist.argmin())
        chosen.append(pick)
        running += feats[pick]
        available[pick] = False
    return torch.tensor(chosen, dtype=torch.long)


def dedupe(data):
    """Merge rows of a LabelledSet that share an image: union of targets and masks, the
    earliest session."""
    uniq, inverse = torch.unique(data.index, return_inverse=True)
    if len(uniq) == len(data.index):
        return data

    def merge(values, how):
        out = torch.zeros((len(uniq),) + values.shape[1:], dtype=values.dtype)
        idx = inverse.view(-1, *[1] * (values.dim() - 1)).expand_as(values)
        return out.scatter_reduce(0, idx, values, how, include_self=False)

    mask = merge(data.mask.to(torch.uint8), "amax").bool()
    return data.with_rows(uniq, merge(data.targets, "amax"), mask, merge(data.session, "amin"))


class LabelMemory(ExemplarsBuffer):
    """Per-class priority lists over a stream's training pool, merged into one buffer."""

    def __init__(self, size: int, mode: str = "per_class", selection: str = "herding",
                 batch_size: int = 256, num_workers: int = 0,
                 generator: torch.Generator | None = None):
        if mode not in ("per_class", "total") or selection not in ("herding", "random"):
            raise ValueError(f"memory mode {mode!r} / selection {selection!r}: expected "
                             "per_class|total and herding|random")
        super().__init__(max_size=size)
        self.mode, self.selection = mode, selection
        self.batch_size, self.num_workers = batch_size, num_workers
        self.generator = generator or torch.Generator()
        self.per_class: dict[int, object] = {}
        # pool indices never selected (e.g. BiC's held-out validation samples)
        self.excluded: torch.Tensor | None = None

    def quota(self, n_seen: int) -> int:
        return self.max_size if self.mode == "per_class" else self.max_size // max(1, n_seen)

    def post_adapt(self, agent_state, exp):
        """Select samples of the session just trained and shrink older classes to quota."""
        strategy = agent_state
        data = exp.dataset.eval()
        quota = self.quota(strategy.n_seen)
        feats = self._features(strategy, data) if self.selection == "herding" else None
        for c in strategy.info.sessions[strategy.session]:
            if strategy.info.label_mode == "multi":
                rows = torch.nonzero(data.targets[:, c] * data.mask[:, c]).flatten()
            else:
                rows = torch.nonzero(data.targets == c).flatten()
            if self.excluded is not None:
                rows = rows[~torch.isin(data.index[rows], self.excluded)]
            if feats is not None:
                order = rows[herding_order(feats[rows], quota)]
            else:
                order = rows[torch.randperm(len(rows), generator=self.generator)[:quota]]
            self.per_class[c] = data.subset(order)
        self.resize(strategy, self.max_size)

    def resize(self, strategy, new_size: int):
        self.max_size = new_size
        quota = self.quota(strategy.n_seen)
        kept = [s.subset(range(min(quota, len(s)))) for s in self.per_class.values()]
        if kept:  # a class whose quota fell to 0 keeps nothing
            merged = kept[0]
            for s in kept[1:]:
                merged = merged.concat(s)
            self.buffer = dedupe(merged)

    def relabel(self, index: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
        """Give the stored rows of the images ``index`` (distinct pool indices) the labels
        ``targets`` and ``mask``, in the buffer and in every class's list (for methods that
        restore missing labels, e.g. RebLL's relabeling)."""
        order = index.argsort()
        index, targets, mask = index[order], targets[order], mask[order]

        def relabelled(rows):
            pos = torch.searchsorted(index, rows.index).clamp(max=len(index) - 1)
            hit = (index[pos] == rows.index)[:, None]
            return rows.with_rows(rows.index, torch.where(hit, targets[pos], rows.targets),
                                  torch.where(hit, mask[pos], rows.mask), rows.session)

        self.per_class = {c: relabelled(rows) for c, rows in self.per_class.items()}
        self.buffer = relabelled(self.buffer)

    def _features(self, strategy, data) -> torch.Tensor:
        model = strategy.model
        return eval_outputs(model, data, self.batch_size,
                            lambda x: model.features(x.to(strategy.device)).float().cpu(),
                            num_workers=self.num_workers)


class MemoryPlugin(SupervisedPlugin):
    """Adds the memory to every session's training data and updates it afterwards.

    ``trained_memory``: the memory rows that joined the last session's training data, with
    their stored labels (None before any), for the memory-label diagnostics.
    """

    def __init__(self, memory: LabelMemory, labels: str = "own"):
        super().__init__()
        if labels not in MEMORY_LABELS:
            raise ValueError(f"memory labels {labels!r}: expected {'|'.join(MEMORY_LABELS)}")
        self.memory = memory
        self.labels = labels
        self.trained_memory = None

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        if self.labels == "forward" and len(self.memory.buffer) \
                and strategy.info.label_mode == "multi":
            self._label_forward(strategy)
        self.trained_memory = self.memory.buffer if len(self.memory.buffer) else None
        if self.trained_memory is not None:
            strategy.adapted_dataset = strategy.adapted_dataset.concat(self.memory.buffer)

    def after_training_exp(self, strategy, **kwargs):
        self.memory.post_adapt(strategy, strategy.experience)

    def _label_forward(self, strategy):
        """The current session's label block of every exemplar, from the session's data."""
        buffer, current = self.memory.buffer, strategy.adapted_dataset
        block = strategy.info.sessions[strategy.session]
        order = current.index.argsort()
        pos = torch.searchsorted(current.index[order], buffer.index).clamp(
            max=len(current.index) - 1)
        rows = order[pos]
        hit = (current.index[rows] == buffer.index)[:, None]
        targets, mask = buffer.targets.clone(), buffer.mask.clone()
        targets[:, block] = torch.where(hit, current.targets[rows][:, block], 0.0)
        mask[:, block] = True
        self.memory.relabel(buffer.index, targets, mask)
