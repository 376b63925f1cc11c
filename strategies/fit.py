"""Train this model on this dataset with this loss: a plain routine for auxiliary models
(e.g. the teachers of parallel self-distillation) that live outside the session loop."""
from __future__ import annotations

from typing import Callable

import torch

from .loader import batch_loader


def backward_step(model: torch.nn.Module, loss_fn: Callable, x, y, mask) -> torch.Tensor:
    """The default training step: ``loss_fn(model(x), y, mask)``, back-propagated; returns
    the loss, detached."""
    loss = loss_fn(model(x), y, mask)
    loss.backward()
    return loss.detach()


def fit(model: torch.nn.Module, dataset, loss_fn: Callable, *, epochs: int, batch_size: int,
        optimizer: torch.optim.Optimizer, device="cpu", num_workers: int = 0,
        generator: torch.Generator | None = None, step: Callable = backward_step
        ) -> list[float]:
    """Train ``model`` on ``dataset`` (a LabelledSet) for ``epochs``, shuffling with
    ``generator`` (give one, so that the caller's other random streams do not move).

    ``loss_fn(logits, targets, mask)`` is any loss of strategies.losses (or alike).
    ``step(model, loss_fn, x, y, mask)`` runs the forward and backward passes of one batch
    and returns its loss, detached (default :func:`backward_step`; a model trained in parts,
    such as PSD's teachers, back-propagates each part's loss on its own). Returns the mean
    loss of every epoch (one host sync per epoch).
    """
    loader = batch_loader(dataset, batch_size, shuffle=True, num_workers=num_workers,
                          pin_memory=torch.device(device).type == "cuda", generator=generator)
    model.to(device).train()
    means = []
    for _ in range(epochs):
        total = torch.zeros((), device=device)
        for x, y, mask, *_ in loader:
            x, y, mask = x.to(device), y.to(device), mask.to(device)
            optimizer.zero_grad()
            total += step(model, loss_fn, x, y, mask)
            optimizer.step()
        means.append(float(total) / max(1, len(loader)))
    return means
