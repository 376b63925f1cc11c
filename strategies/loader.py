"""Batch loaders for LabelledSets: one fetch per batch instead of one per sample.

torch's DataLoader with its default sampler fetches a batch sample by sample, through
Avalanche's dataset layers, and then collates. Over an in-memory pool that per-sample work
costs about a tenth of a small model's training step. Here the sampler yields lists of row
indices and :meth:`LabelledSet.batch` builds the whole batch at once: one indexing operation
when the pool can (``take``) and the rows need no per-sample transform, else one transform
per sample, as usual.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler


class _Batches(Dataset):
    """``batches[rows]`` is ``data.batch(rows)``: the collated batch of those rows."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, rows):
        return self.data.batch(rows)


def batch_loader(data, batch_size: int, *, shuffle: bool = False, drop_last: bool = False,
                 num_workers: int = 0, pin_memory: bool = False,
                 generator: Optional[torch.Generator] = None) -> DataLoader:
    """A DataLoader over ``data`` (a LabelledSet) yielding ``(x, y, mask, session)`` batches.

    Shuffling (and the seed of the workers' generators) draws from ``generator``; without
    one, a shuffling loader draws from torch's global generator, and a sequential one from a
    private generator, so that evaluation and feature passes never move the global one.
    Workers, when asked for, persist across the loader's epochs.
    """
    if generator is None and not shuffle:
        generator = torch.Generator()
    order = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
    return DataLoader(_Batches(data), batch_size=None,
                      sampler=BatchSampler(order, batch_size, drop_last),
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0, generator=generator)


@torch.no_grad()
def eval_outputs(model: torch.nn.Module, data, batch_size: int,
                 forward: Callable[[torch.Tensor], torch.Tensor], *,
                 num_workers: int = 0) -> torch.Tensor:
    """``forward(x)`` on every batch of ``data`` in order, concatenated: ``model`` in eval mode
    (its mode restored afterwards), no gradients."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([forward(x) for x, *_ in
                          batch_loader(data, batch_size, num_workers=num_workers)])
    finally:
        model.train(was_training)
