"""Shared pieces of every stream: names, the StreamInfo contract, and session building.

A stream is named ``dataset:B{base}-C{inc}`` with optional ``?key=value&...`` options
(e.g. ``digits:B0-C2?data_seed=1``); ``dataset:B{n}`` (n the number of classes) is the
offline protocol, one session with every class. Classes are re-indexed in arrival order, so
column ``j`` of every target is the ``j``-th class to arrive and the classes seen after a
session are always a prefix ``0..n_seen-1``.

Multi-label sessions follow the MLCIL protocol of KRT (Dong et al., ICCV 2023) and RebLL
(arXiv:2408.12161): training session ``t`` holds every image that shows a class of session
``t``, labelled only for those classes (task-level partial labels); test experience ``t``
holds every test image that shows a seen class, with full labels over all classes (metrics
restrict them to the seen prefix).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.benchmarks.utils.transform_groups import TransformGroups
from avalanche.benchmarks.utils.transforms import TupleTransform
from torch.utils.data import Dataset

from .names import StreamError, StreamName, parse_name, session_splits  # noqa: F401


def positions(order: torch.Tensor) -> torch.Tensor:
    """The arrival position of each dataset class id (the inverse of ``order``)."""
    out = torch.empty_like(order)
    out[order] = torch.arange(len(order))
    return out


@dataclass
class StreamInfo:
    """What a method and the report need to know about a stream.

    ``class_names`` and ``class_counts`` are indexed in arrival order (model output order);
    ``class_order`` gives, for each of those positions, the dataset's own class id.
    ``class_counts`` are training images per class over the whole stream (the imbalance
    profile); ``recipe`` is the stream's default training recipe.
    """

    name: str
    label_mode: str  # "multi" or "single"
    class_names: list[str]
    class_order: list[int]
    sessions: list[list[int]]
    class_counts: list[int]
    recipe: dict

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def seen_after(self, session: int) -> int:
        """Number of classes seen once ``session`` has been trained."""
        return self.sessions[session][-1] + 1

    def to_dict(self) -> dict:
        return asdict(self)


class _Rows(Dataset):
    """Rows of a LabelledSet: (image, target, mask, session) with the raw image."""

    def __init__(self, pool, index, targets, mask, session):
        self.pool, self.index = pool, index
        self.targets, self.mask, self.session = targets, mask, session

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return self.pool[int(self.index[i])], self.targets[i], self.mask[i], self.session[i]


class LabelledSet(AvalancheDataset):
    """Samples of one image pool with their labels, as an Avalanche dataset.

    ``__getitem__`` returns ``(image, target, mask, session)``: ``target`` is a float
    multi-hot vector (multi-label) or a class index (single-label), ``mask`` marks the
    labelled entries (an unlabelled entry is unknown, not negative) and ``session`` is the
    session the sample was labelled in (memory samples keep theirs). The label tensors stay
    addressable as attributes (``targets``, ``mask``, ``session``, ``index``), and subsets and
    concatenations keep them, which Avalanche's DataAttribute cannot do for multi-hot rows.
    """

    def __init__(
        self,
        pool: Dataset,
        index: torch.Tensor,
        targets: torch.Tensor,
        mask: torch.Tensor,
        session: torch.Tensor,
        transforms: Optional[dict[str, Callable]] = None,
        group: str = "train",
    ):
        self.pool, self.index = pool, index.long()
        self.targets, self.mask, self.session = targets, mask.bool(), session.long()
        self.transforms = transforms or {}
        groups = TransformGroups(
            {name: TupleTransform([self.transforms.get(name)]) for name in ("train", "eval")},
            current_group=group,
        )
        rows = _Rows(self.pool, self.index, self.targets, self.mask, self.session)
        super().__init__([rows], transform_groups=groups)
        self._flat_data = self._flat_data.with_transforms(group)  # Avalanche resets it

    @property
    def group(self) -> str:
        return self._flat_data._transform_groups.current_group

    def with_rows(self, index, targets, mask, session) -> "LabelledSet":
        """Other rows of the same pool, with this set's transforms and current group."""
        return LabelledSet(self.pool, index, targets, mask, session, self.transforms, self.group)

    def batch(self, rows: Sequence[int]) -> tuple:
        """The collated ``(x, y, mask, session)`` of ``rows``: one ``pool.take`` when the pool
        has it and the current group has no transform, else one transform per sample."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        index = self.index[rows]
        transform = self.transforms.get(self.group)
        if transform is None and hasattr(self.pool, "take"):
            images = self.pool.take(index)
        else:
            transform = transform or (lambda image: image)
            images = torch.stack([transform(self.pool[int(i)]) for i in index])
        return images, self.targets[rows], self.mask[rows], self.session[rows]

    def subset(self, indices: Sequence[int]) -> "LabelledSet":
        i = torch.as_tensor(indices, dtype=torch.long)
        return self.with_rows(self.index[i], self.targets[i], self.mask[i], self.session[i])

    def concat(self, other: "LabelledSet") -> "LabelledSet":
        if other.pool is not self.pool:
            raise ValueError("only LabelledSets of the same image pool can be concatenated")
        return self.with_rows(
            torch.cat([self.index, other.index]),
            torch.cat([self.targets, other.targets]),
            torch.cat([self.mask, other.mask]),
            torch.cat([self.session, other.session]),
        )



def multilabel_sets(
    pool, labels: torch.Tensor, sessions: list[list[int]], transforms, training: bool,
    members: Optional[torch.Tensor] = None,
) -> list[LabelledSet]:
    """One LabelledSet per session from full multi-hot ``labels`` (N, C) over ``pool``.

    Training sets: images showing a class of session t, labelled only for session t.
    Test sets: images showing a class seen by session t, with full labels. ``members`` (N, C)
    bool says which classes an image shows for membership (default: its labels); it differs
    from the labels where annotations count for membership only (COCO's crowd ones).
    """
    members = labels.bool() if members is None else members
    num_classes = labels.shape[1]
    sets = []
    for t, classes in enumerate(sessions):
        block = torch.zeros(num_classes, dtype=torch.bool)
        if training:
            block[classes] = True
        else:
            block[: classes[-1] + 1] = True
        rows = torch.nonzero(members[:, block].any(1)).flatten()
        if training:
            targets, mask = labels[rows] * block, block.expand(len(rows), -1).clone()
        else:
            targets, mask = labels[rows].clone(), torch.ones(len(rows), num_classes, dtype=torch.bool)
        session = torch.full((len(rows),), t, dtype=torch.long)
        sets.append(LabelledSet(pool, rows, targets, mask, session, transforms,
                                "train" if training else "eval"))
    return sets


def singlelabel_sets(
    pool, labels: torch.Tensor, sessions: list[list[int]], transforms, training: bool
) -> list[LabelledSet]:
    """One LabelledSet per session from class indices ``labels`` (N,) over ``pool``.

    Training sets hold the samples of session t's classes; test sets the samples of all
    classes seen by session t. The mask marks the session's classes.
    """
    num_classes = sessions[-1][-1] + 1
    sets = []
    for t, classes in enumerate(sessions):
        wanted = torch.tensor(classes) if training else torch.arange(classes[-1] + 1)
        rows = torch.nonzero(torch.isin(labels, wanted)).flatten()
        block = torch.zeros(num_classes, dtype=torch.bool)
        block[classes] = True
        mask = block.expand(len(rows), -1).clone()
        session = torch.full((len(rows),), t, dtype=torch.long)
        sets.append(LabelledSet(pool, rows, labels[rows].clone(), mask, session, transforms,
                                "train" if training else "eval"))
    return sets


def cumulative_sets(train_sets: list[LabelledSet], full_labels: torch.Tensor,
                    sessions: list[list[int]], label_mode: str) -> list[LabelledSet]:
    """Joint-training data: for each session, all training samples seen so far.

    Multi-label: each image once, with its full labels (``full_labels`` is indexed by pool
    index) over the classes seen so far. Single-label: the union of the sessions' samples.
    """
    out = []
    for t, current in enumerate(train_sets):
        if t == 0 and label_mode == "single":
            out.append(current)
        elif label_mode == "single":
            out.append(out[-1].concat(current))
        else:
            rows = torch.unique(torch.cat([s.index for s in train_sets[: t + 1]]))
            seen = torch.zeros(full_labels.shape[1], dtype=torch.bool)
            seen[: sessions[t][-1] + 1] = True
            targets = full_labels[rows] * seen
            mask = seen.expand(len(rows), -1).clone()
            session = torch.full((len(rows),), t, dtype=torch.long)
            out.append(current.with_rows(rows, targets, mask, session))
    return out


def make_benchmark(train_sets, test_sets, joint_sets, valid_sets=None):
    """An Avalanche benchmark with ``train_stream``, ``test_stream``, ``joint_stream``
    (cumulative training data for joint training) and, if given, ``valid_stream``."""
    streams = dict(train=train_sets, test=test_sets, joint=joint_sets)
    if valid_sets is not None:
        streams["valid"] = valid_sets
    return benchmark_from_datasets(**streams)


def held_by_image(train_sets: list[LabelledSet], fraction: float, seed: int) -> torch.Tensor:
    """Pool indices of ``round(fraction * n)`` of the n training images, drawn by a torch
    generator seeded ``seed`` (an image in several sessions counts once)."""
    images = torch.unique(torch.cat([s.index for s in train_sets]))
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[perm[: int(round(fraction * len(images)))]]


def held_by_class(train_sets: list[LabelledSet], sessions: list[list[int]], fraction: float,
                  seed: int) -> torch.Tensor:
    """Pool indices held out per class of each single-label session, as the official
    long-tailed CIL loader does (``get_data`` of its ``memory_dataset.py``).

    A session's images are listed in pool order; for each of its classes in arrival order,
    ``k = numpy.round(n * fraction)`` of the n images of the class still listed leave it, the
    ranks drawn by ``random.Random(seed).sample(range(n), k)`` (one generator for the whole
    stream, as the official script's global one seeded with its ``--seed``). When ``k`` is 0,
    the official loader removes the first image still listed in the session, whatever its
    class; so does this one, so that the counts match.
    """
    generator = random.Random(seed)
    held = []
    for data, classes in zip(train_sets, sessions):
        rows, labels = data.index.tolist(), data.targets.tolist()
        listed = list(range(len(rows)))
        for c in classes:
            members = [p for p in listed if labels[p] == c]
            k = int(np.round(len(members) * fraction))
            out = set(listed[:1]) if k == 0 else \
                {members[r] for r in generator.sample(range(len(members)), k)}
            listed = [p for p in listed if p not in out]
            held.extend(rows[p] for p in out)
    return torch.tensor(held, dtype=torch.long)


def carve_validation(train_sets: list[LabelledSet], full_labels: torch.Tensor,
                     sessions: list[list[int]], fraction: float, seed: int, by: str = "image"):
    """Hold ``fraction`` of the training images out as a validation split (seeded), ``by``
    image (:func:`held_by_image`) or by class (:func:`held_by_class`, single-label only).

    An image can sit in several sessions' training sets (multi-label, with other partial
    labels); a held-out image leaves every one of them. Validation experience ``t`` mirrors
    test experience ``t``: every held-out image showing a class seen by session ``t``, with
    full labels (``full_labels``: multi-hot rows or class indices, by pool index). Returns
    (train_sets, valid_sets, class_counts): the training sets without the held-out images,
    and the per-class counts of the images left. The test split is never touched.
    """
    images = torch.unique(torch.cat([s.index for s in train_sets]))
    held = held_by_class(train_sets, sessions, fraction, seed) if by == "class" else \
        held_by_image(train_sets, fraction, seed)
    held = held.sort().values
    kept = [s.subset(torch.nonzero(~torch.isin(s.index, held)).flatten()) for s in train_sets]
    num_classes = sessions[-1][-1] + 1
    multi = full_labels.dim() == 2
    hot = full_labels if multi else F.one_hot(full_labels, num_classes)
    left = hot[images[~torch.isin(images, held)]].sum(0)
    valid = []
    for t, classes in enumerate(sessions):
        rows = held[hot[held, : classes[-1] + 1].any(1)]
        valid.append(LabelledSet(train_sets[0].pool, rows, full_labels[rows].clone(),
                                 torch.ones(len(rows), num_classes, dtype=torch.bool),
                                 torch.full((len(rows),), t), train_sets[0].transforms, "eval"))
    return kept, valid, left.long().tolist()


class TensorPool(Dataset):
    """An image pool held in memory as one tensor (N, C, H, W)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The images at ``index`` as one batch."""
        return self.images[index]
