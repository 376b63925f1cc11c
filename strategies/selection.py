"""Class-balancing memory selection on label matrices: PRS and OCDM.

Both work on boolean label rows (N, C): a sample's positive labels, as the memory stores them
(partial labels: only the classes its session labelled). :class:`~strategies.memory.LabelMemory`
feeds them the session's samples one by one (PRS) or in chunks (OCDM), in a seeded random
order, and keeps the images and label tensors that go with the rows.

PRS, Partitioning Reservoir Sampling (Kim et al., ECCV 2020), as its official code does it
(github.com/cdjkim/PRS, code/models/reservoir/mlab_stratified_reservoir.py, ``PRS_mlab``):

- running counts ``n_i`` of every class in the stream; class i's target share of the memory
  ``p_i = n_i^rho / sum_j n_j^rho`` over the classes the memory holds (a class absent from the
  memory keeps its last share, 0 before it ever entered), recomputed after every sample;
- while the memory has room every sample enters; then a sample with labels K enters with
  probability ``sum_{i in K} w_i min(1, m_i / n_i)``, ``m_i = capacity * p_i`` and ``w`` the
  softmax of ``-n_i`` over K (its rarest labels weigh most);
- an entering sample replaces one chosen by: a class y drawn with probability softmax of
  ``delta_i = l_i - p_i L`` (``l_i``: the memory's count of class i, ``L = sum l_i``); among
  the memory's samples of y, those missing the most under-filled classes (``delta <= 0``);
  among those, the first whose removal leaves the least ``sum_i |l_i - p_i L|`` (over the
  classes still held; the first candidate when none is below the capacity).

The draws use the memory's generator: one uniform number per sample offered after the memory
is full (enter or not) and one per replacement (the class), in that order, as the official
code draws from Python's ``random``; classes are ordered by first sight in the stream (within
a sample by index), as the official code's ordered dict of sub-streams is.

OCDM, Optimizing Class Distribution in Memory (Liang & Li, arXiv:2209.11469, 2022; no code
released), reconstructed from the paper: when a batch arrives at a full memory, the memory
becomes the subset of memory + batch of the memory's size whose label distribution is closest
to a target distribution, found greedily: remove, one at a time, the sample whose removal
brings the remaining set's distribution closest to the target. The distribution of a set is
its per-class label counts normalised to sum 1. What the paper leaves open is an option
(strategies/options.py, ``SELECTION_OPTIONS["ocdm"]``): the target's power ``rho`` (target
``p_i`` proportional to ``n_i^rho`` over the classes seen, PRS's partition; 0: uniform), the
batch size, the divergence (KL(target || memory) by default) and ``eps``, added to every
class's count so that an emptied class has a finite divergence.
"""
from __future__ import annotations

import bisect

import numpy as np
import torch


def _draw(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def _pick(weights: torch.Tensor, u: float) -> int:
    """The position ``random.choices(range(len(weights)), weights)`` takes for ``random() ==
    u``: the first whose cumulative weight exceeds ``u * total``."""
    cumulative = torch.cumsum(weights.double(), 0).tolist()
    return min(bisect.bisect(cumulative, u * cumulative[-1]), len(cumulative) - 1)


def _sequential_sum(values: torch.Tensor) -> torch.Tensor:
    """Float32 sums along the last dimension, left to right, rounding after every addition
    (the official code's ``+=`` loops over float32 tensors)."""
    if not values.shape[-1]:
        return values.sum(-1)
    return torch.from_numpy(np.add.accumulate(values.float().numpy(), axis=-1)[..., -1].copy())


class PartitioningReservoir:
    """PRS's state on label rows: ``labels`` (S, C) of the stored samples in slot order,
    ``n`` the running class counts, ``share`` the target shares ``p_i``. The arithmetic is
    the official code's: its counts turn into float32 tensors (``0. + tensor``), so shares,
    quotas and distances are float32, summed class by class in first-sight order."""

    def __init__(self, num_classes: int, rho: float = 0.0,
                 generator: torch.Generator | None = None):
        self.rho = rho
        self.generator = generator or torch.Generator()
        self.n = torch.zeros(num_classes, dtype=torch.float32)
        self.power = torch.zeros(num_classes, dtype=torch.float32)  # n_i^rho
        self.share = torch.zeros(num_classes, dtype=torch.float32)
        self.order: list[int] = []  # classes by first sight
        self.labels = torch.zeros(0, num_classes, dtype=torch.bool)

    @property
    def labels(self) -> torch.Tensor:
        """The stored samples' labels (S, C), slot order (a view: set rows by ``set_row``)."""
        return self._rows[:self.size]

    @labels.setter
    def labels(self, value: torch.Tensor) -> None:
        self._rows, self.size = value.bool().clone(), len(value)
        self._counts = self._rows.sum(0)

    def counts(self) -> torch.Tensor:
        """The memory's count of each class (C,)."""
        return self._counts.clone()

    def set_row(self, slot: int, row: torch.Tensor) -> None:
        if slot == self.size:
            if self.size == len(self._rows):  # room for twice as many
                more = torch.zeros(max(1, self.size), self._rows.shape[1], dtype=torch.bool)
                self._rows = torch.cat([self._rows, more])
            self.size += 1
        else:
            self._counts -= self._rows[slot].long()
        self._rows[slot] = row
        self._counts += row.long()

    def delete(self, slot: int) -> None:
        self._counts -= self._rows[slot].long()
        self._rows[slot:self.size - 1] = self._rows[slot + 1:self.size].clone()
        self.size -= 1

    def _sight(self, keys) -> None:
        known = set(self.order)
        self.order += [k for k in keys if k not in known]

    def _held(self, counts: torch.Tensor) -> list[int]:
        """The classes the memory holds, by first sight (a class never offered but held, as
        a relabelled exemplar's may be, is sighted now)."""
        present = torch.nonzero(counts > 0).flatten().tolist()
        self._sight(present)
        present = set(present)
        return [c for c in self.order if c in present]

    def partition(self) -> None:
        """``p_i = n_i^rho / sum_j n_j^rho`` over the classes the memory holds (and the
        stream has shown)."""
        counted = self.n.tolist()
        held = [c for c in self._held(self.counts()) if counted[c] > 0]
        if not held:
            return
        power = self.power[held]
        self.share[held] = power / _sequential_sum(power)

    def observe(self, keys: list[int]) -> None:
        """Count a sample's labels in the stream and re-partition."""
        self._sight(keys)
        for key in keys:  # one class at a time, as the official code takes the power
            self.n[key] += 1
            self.power[key] = self.n[key] ** self.rho
        self.partition()

    def accept(self, keys: list[int], capacity: int) -> bool:
        """Whether a sample with labels ``keys`` enters a full memory (one draw)."""
        if not keys:
            _draw(self.generator)
            return False
        m = capacity * self.share[keys]
        n = self.n[keys]
        probs = torch.where(n > m, m / n.clamp(min=1), torch.ones_like(n))
        s = (probs * torch.softmax(-n, 0)).sum()
        total = float(s) + float(1 - s)  # random.choices([True, False], [s, 1 - s])
        return _draw(self.generator) * total < float(s)

    def victim(self, capacity: int) -> int:
        """The slot a new sample replaces (one draw)."""
        counts = self.counts()
        total = float(counts.sum())
        delta = counts - self.share * total
        held = self._held(counts)
        if not held:  # no stored sample has a label left: the first goes
            return 0
        y = held[_pick(torch.softmax(delta[held], 0), _draw(self.generator))]
        query = (counts > 0) & (delta <= 0)
        candidates = torch.nonzero(self.labels[:, y]).flatten()
        scores = (~self.labels[candidates] & query).sum(1)
        candidates = candidates[scores == scores.max()]
        after = counts - self.labels[candidates].long()  # (K, C) counts without each
        after_total = after.sum(1, keepdim=True).float()
        # sum_i |l_i - p_i L| over the classes still held (a 0 added changes no float sum)
        gaps = (after - self.share * after_total).abs() * (after > 0)
        diffs = _sequential_sum(gaps[:, held])
        if not (diffs < capacity).any():
            return int(candidates[0])
        return int(candidates[int(diffs.argmin())])  # the first of the least

    def offer(self, keys: list[int], capacity: int) -> int | None:
        """Offer a sample with labels ``keys``: the slot it takes (``len(labels)`` when it is
        appended), or None when it stays out. Updates the counts and shares either way."""
        self._sight(keys)  # first sight comes before the draws, as in the official code
        row = torch.zeros(self.labels.shape[1], dtype=torch.bool)
        row[keys] = True
        slot = None
        if self.size < capacity:
            slot = self.size
        elif capacity > 0 and self.accept(keys, capacity):
            slot = self.victim(capacity)
        if slot is not None:
            self.set_row(slot, row)
        self.observe(keys)
        return slot

    def offer_held(self, slot: int, keys: list[int], capacity: int) -> bool:
        """Offer a sample whose image the memory holds at ``slot``: when it enters (by the
        same rule as any sample), its labels join the slot's and nothing is evicted."""
        self._sight(keys)
        enters = self.size < capacity or (capacity > 0 and self.accept(keys, capacity))
        if enters:
            row = self.labels[slot].clone()
            row[keys] = True
            self.set_row(slot, row)
        self.observe(keys)
        return enters

    def evict(self, capacity: int) -> list[int]:
        """Shrink the memory to ``capacity`` by PRS's replacement choice, one sample at a
        time; the slots removed, each counted in the memory as it was when removed."""
        removed = []
        while self.size > capacity and capacity > 0:
            slot = self.victim(capacity)
            removed.append(slot)
            self.delete(slot)
        if capacity <= 0:
            removed = list(range(self.size - 1, -1, -1))
            self.labels = self.labels[:0]
        return removed


def target_distribution(n: torch.Tensor, rho: float) -> torch.Tensor:
    """``p_i`` proportional to ``n_i^rho`` over the classes seen (``n_i > 0``), 0 elsewhere."""
    p = torch.zeros_like(n, dtype=torch.float64)
    seen = n > 0
    if seen.any():
        p[seen] = n[seen].double() ** rho
        p /= p.sum()
    return p


def divergence(counts: torch.Tensor, target: torch.Tensor, kind: str = "kl_target",
               eps: float = 1e-6) -> torch.Tensor:
    """The divergence of each row of label ``counts`` (..., C) from ``target`` (C,), over the
    classes of the target's support: ``kl_target`` KL(target || q), ``kl_memory``
    KL(q || target), with ``q`` the counts plus ``eps``, normalised."""
    support = target > 0
    p = target[support]
    q = counts.double()[..., support] + eps
    q = q / q.sum(-1, keepdim=True)
    if kind == "kl_target":
        return (p * (p.log() - q.log())).sum(-1)
    if kind == "kl_memory":
        return (q * (q.log() - p.log())).sum(-1)
    raise ValueError(f"divergence {kind!r}: expected kl_target|kl_memory")


def divergence_without(counts: torch.Tensor, rows: torch.Tensor, target: torch.Tensor,
                       kind: str = "kl_target", eps: float = 1e-6) -> torch.Tensor:
    """``divergence(counts - rows[j], target)`` for every 0/1 row j of ``rows`` (N, C), in
    O(N C) by one matrix-vector product: removing a row changes only its classes' terms and
    the normaliser."""
    support = target > 0
    p = target[support]
    a = counts.double()[support] + eps  # the smoothed counts before any removal
    y = rows.double()[:, support]
    z = a.sum() - y.sum(1)  # the normaliser after each removal
    if kind == "kl_target":  # sum p log p - sum p log(a - y) + log z
        change = p * ((a - 1).clamp(min=eps).log() - a.log())
        return (p * p.log()).sum() - (p * a.log()).sum() - y @ change + z.log()
    if kind == "kl_memory":  # (1/z) sum (a - y) log((a - y) / p) - log z
        def g(v):
            return v * (v.log() - p.log())

        change = g((a - 1).clamp(min=eps)) - g(a)
        return (g(a).sum() + y @ change) / z - z.log()
    raise ValueError(f"divergence {kind!r}: expected kl_target|kl_memory")


def ocdm_remove(labels: torch.Tensor, target: torch.Tensor, k: int, kind: str = "kl_target",
                eps: float = 1e-6) -> torch.Tensor:
    """OCDM's greedy step, ``k`` times: remove the row of ``labels`` (N, C) whose removal
    leaves the least divergence from ``target``; the kept rows' indices, in order (ties: the
    first row)."""
    labels = labels.bool()
    kept = torch.ones(len(labels), dtype=torch.bool)
    counts = labels.sum(0).double()
    rows = labels.double()
    for _ in range(min(k, len(labels))):
        div = divergence_without(counts, rows, target, kind, eps)
        div[~kept] = float("inf")
        out = int(div.argmin())
        kept[out] = False
        counts -= rows[out]
    return torch.nonzero(kept).flatten()
