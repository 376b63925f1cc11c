"""A replay memory for multi-hot (and single) labels, on Avalanche's storage-policy interface.

Avalanche's class-balanced buffer groups samples by integer targets, which multi-hot rows
are not, and walks the dataset in Python. Here selection is vectorised over label tensors:

- budget: ``per_class`` (``size`` samples for each seen class) or ``total`` (``size``
  samples in all, ``size // n_seen`` per class, older classes shrunk as classes arrive);
- selection: ``random`` or ``herding`` (iCaRL, Rebuffi et al. CVPR 2017, Alg. 4: greedily
  pick the sample whose addition keeps the mean of the selected L2-normalised features
  closest to the class mean), per class; or ``prs`` / ``ocdm``, which choose the whole
  memory to balance its classes (strategies/selection.py);
- per class (herding, random): each class keeps a priority-ordered list of the samples of its
  session labelled with it; the buffer is their union with images deduplicated: an image kept
  for classes of two sessions appears once, with the union of its two label blocks and masks.
  Labels are kept as the sample had them (partial), so methods may relabel them online.
- balanced (prs, ocdm): one memory of ``size * n_seen`` samples (``per_class``) or ``size``
  (``total``), shared by all classes. PRS and OCDM are online (a sample or a small batch at a
  time); here a session's data arrive together, after its training, so they are offered in
  a random order drawn from the memory's generator: PRS one sample at a time, OCDM in batches
  of its ``batch`` option (0: the session at once). Their state (running class counts, PRS's
  shares) carries over sessions; the memory's labels are read afresh at each update (a method
  may have relabelled them). A sample whose image the memory holds already (multi-label: an
  image shows classes of two sessions) takes no second slot: it is counted in the running
  counts, and its labels join the stored row's only when it "enters" (PRS: by the same draw
  as any sample, evicting nothing; OCDM: when the joined labels bring the memory closer to
  the target), as per-class selection joins two label blocks only when both sessions chose
  the image. The labels that count are the stored positives
  (``target * mask >= 0.5``). When the capacity falls below what the memory holds (a
  ``total`` budget never does; BiC's held-out share can), PRS evicts by its replacement rule
  and OCDM by its greedy removal.

:class:`MemoryPlugin` adds the buffer to each session's training data (as in KRT and RebLL,
the memory joins the training set) and updates it after the session; how batches mix the two
is the template's ``replay_batch`` (strategies/template.py). Its ``labels`` option:
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
from .options import MEMORY_LABELS, describe_selection, parse_selection
from .selection import (PartitioningReservoir, divergence, ocdm_remove,
                        target_distribution)


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


def hard_labels(data, num_classes: int, label_mode: str) -> torch.Tensor:
    """The stored positives of a LabelledSet's rows as booleans (N, C)."""
    if label_mode == "multi":
        return data.targets * data.mask >= 0.5
    return torch.nn.functional.one_hot(data.targets, num_classes).bool()


class LabelMemory(ExemplarsBuffer):
    """Per-class priority lists over a stream's training pool, merged into one buffer; or one
    class-balanced memory (``prs``, ``ocdm``). ``selection`` may carry options
    (``"prs?rho=0.5"``, see strategies/options.py)."""

    def __init__(self, size: int, mode: str = "per_class", selection: str = "herding",
                 batch_size: int = 256, num_workers: int = 0,
                 generator: torch.Generator | None = None):
        if mode not in ("per_class", "total"):
            raise ValueError(f"memory mode {mode!r}: expected per_class|total")
        name, options = parse_selection(selection)
        super().__init__(max_size=size)
        self.mode, self.selection, self.options = mode, name, options
        self.description = describe_selection(selection)  # every option written out
        self.batch_size, self.num_workers = batch_size, num_workers
        self.generator = generator or torch.Generator()
        self.per_class: dict[int, object] = {}
        # pool indices never selected (e.g. BiC's held-out validation samples)
        self.excluded: torch.Tensor | None = None
        self.reservoir: PartitioningReservoir | None = None  # prs: its state
        self.stream_counts: torch.Tensor | None = None  # ocdm: running class counts

    def quota(self, n_seen: int) -> int:
        return self.max_size if self.mode == "per_class" else self.max_size // max(1, n_seen)

    def capacity(self, n_seen: int) -> int:
        """Samples a balanced (prs, ocdm) memory holds."""
        return self.max_size * n_seen if self.mode == "per_class" else self.max_size

    def post_adapt(self, agent_state, exp):
        """Select samples of the session just trained and shrink older classes to quota."""
        strategy = agent_state
        data = exp.dataset.eval()
        if self.selection in ("prs", "ocdm"):
            self._balanced(strategy, data)
            return
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

    def _balanced(self, strategy, data):
        """PRS or OCDM over the memory and the session's samples (see the module docstring)."""
        info = strategy.info
        labels = hard_labels(data, info.num_classes, info.label_mode)
        rows = torch.nonzero(labels.any(1)).flatten()
        if self.excluded is not None:
            rows = rows[~torch.isin(data.index[rows], self.excluded)]
        rows = rows[torch.randperm(len(rows), generator=self.generator)]
        fresh = data.subset(rows)
        held = len(self.buffer)
        # candidates: the memory's rows, then the session's in the order they are offered
        pool = self.buffer.concat(fresh) if held else fresh
        hard = hard_labels(pool, info.num_classes, info.label_mode)
        capacity = self.capacity(strategy.n_seen)
        update = self._prs if self.selection == "prs" else self._ocdm
        slots = update(pool, hard, held, capacity, info.num_classes)
        self.buffer = pool.subset(slots)

    @staticmethod
    def _merge(pool, hard, into: int, row: int, label_mode: str):
        """Row ``row`` is an image row ``into`` holds: join its labels to ``into``'s."""
        if label_mode == "multi":
            pool.targets[into] = torch.maximum(pool.targets[into], pool.targets[row])
            pool.mask[into] |= pool.mask[row]
            hard[into] = pool.targets[into] * pool.mask[into] >= 0.5
        pool.session[into] = torch.minimum(pool.session[into], pool.session[row])

    def _prs(self, pool, hard, held: int, capacity: int, num_classes: int) -> list[int]:
        if self.reservoir is None:
            self.reservoir = PartitioningReservoir(num_classes, self.options["rho"],
                                                   self.generator)
        reservoir, mode = self.reservoir, "multi" if pool.targets.dim() == 2 else "single"
        slots = list(range(held))
        reservoir.labels = hard[slots].clone()
        for slot in reservoir.evict(capacity):
            del slots[slot]
        where = {int(pool.index[p]): k for k, p in enumerate(slots)}
        for p in range(held, len(pool)):
            keys = torch.nonzero(hard[p]).flatten().tolist()
            image = int(pool.index[p])
            if image in where:
                k = where[image]
                if reservoir.offer_held(k, keys, capacity):
                    self._merge(pool, hard, slots[k], p, mode)
                    reservoir.set_row(k, hard[slots[k]])
                continue
            slot = reservoir.offer(keys, capacity)
            if slot is None:
                continue
            if slot == len(slots):
                slots.append(p)
            else:
                del where[int(pool.index[slots[slot]])]
                slots[slot] = p
            where[image] = slot
        return slots

    def _ocdm(self, pool, hard, held: int, capacity: int, num_classes: int) -> list[int]:
        if self.stream_counts is None:
            self.stream_counts = torch.zeros(num_classes, dtype=torch.float64)
        mode = "multi" if pool.targets.dim() == 2 else "single"
        opts = self.options

        def shrink(slots):
            if len(slots) <= capacity:
                return slots
            target = target_distribution(self.stream_counts, opts["rho"])
            kept = ocdm_remove(hard[slots], target, len(slots) - capacity,
                               opts["divergence"], opts["eps"])
            return [slots[i] for i in kept.tolist()]

        slots = shrink(list(range(held)))
        new = list(range(held, len(pool)))
        step = opts["batch"] or max(1, len(new))
        for start in range(0, len(new), step):
            chunk = new[start:start + step]
            where = {int(pool.index[p]): p for p in slots}
            held_images = [p for p in chunk if int(pool.index[p]) in where]
            self.stream_counts += hard[chunk].sum(0).double()
            slots = shrink(slots + [p for p in chunk if int(pool.index[p]) not in where])
            # an image the memory holds enters when its labels bring the memory closer to
            # the target (nothing is removed for it)
            for p in held_images:
                into = where[int(pool.index[p])]
                if into not in slots:
                    continue
                target = target_distribution(self.stream_counts, opts["rho"])
                counts = hard[slots].sum(0)
                joined = counts + (hard[p] & ~hard[into])
                if divergence(joined, target, opts["divergence"], opts["eps"]) < divergence(
                        counts, target, opts["divergence"], opts["eps"]):
                    self._merge(pool, hard, into, p, mode)
        return slots

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
            strategy.replay_memory = self.memory.buffer

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
