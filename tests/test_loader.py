"""Batch loading: one fetch per batch gives exactly what per-sample fetching gives."""
import pytest
import torch

from benchmarks.streams.base import LabelledSet, TensorPool
from strategies.loader import batch_loader, eval_outputs


def _set(transforms=None, group="train"):
    gen = torch.Generator().manual_seed(0)
    pool = TensorPool(torch.rand(10, 1, 4, 4, generator=gen))
    index = torch.tensor([9, 2, 5, 7, 0, 3])
    targets = (torch.rand(6, 3, generator=gen) > 0.5).float()
    mask = torch.rand(6, 3, generator=gen) > 0.3
    return LabelledSet(pool, index, targets, mask, torch.arange(6), transforms, group)


def _per_sample(data, rows):
    items = [data[i] for i in rows]
    return tuple(torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(4))


def test_batch_equals_stacked_samples_with_and_without_a_transform():
    flip = {"train": lambda x: x.flip(-1) + 1, "eval": None}
    for data in (_set(), _set(flip), _set(flip).eval()):
        got = data.batch([4, 1, 1, 5])
        for a, b in zip(got, _per_sample(data, [4, 1, 1, 5])):
            assert torch.equal(a, b)
    assert torch.equal(_set(flip).batch([0])[0], _set().pool.images[9:10].flip(-1) + 1)


def test_loader_covers_every_row_once_per_epoch_in_seeded_order():
    data = _set()
    loader = batch_loader(data, 4, shuffle=True, generator=torch.Generator().manual_seed(1))
    epochs = [[batch for batch in loader] for _ in range(2)]
    for batches in epochs:
        assert [len(b[0]) for b in batches] == [4, 2]
        sessions = torch.cat([b[3] for b in batches])
        assert sorted(sessions.tolist()) == list(range(6))
        for x, y, mask, session in batches:  # rows stay aligned
            assert torch.equal(x, data.pool.images[data.index[session]])
            assert torch.equal(y, data.targets[session]) and torch.equal(mask, data.mask[session])
    orders = [torch.cat([b[3] for b in batches]).tolist() for batches in epochs]
    assert orders[0] != orders[1]
    again = batch_loader(data, 4, shuffle=True, generator=torch.Generator().manual_seed(1))
    assert torch.cat([b[3] for b in again]).tolist() == orders[0]
    in_order = batch_loader(data, 4, drop_last=True)
    assert [b[3].tolist() for b in in_order] == [[0, 1, 2, 3]]


def test_eval_outputs_runs_in_eval_mode_in_order_and_restores_the_mode():
    data = _set()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(16))
    model(torch.rand(8, 1, 4, 4) * 5)  # running statistics away from the identity
    stats = model[1].running_mean.clone()
    out = eval_outputs(model, data, 4, model)
    assert model.training and torch.equal(model[1].running_mean, stats)  # no train-mode pass
    model.eval()
    assert torch.allclose(out, model(data.pool.images[data.index]))
    assert not out.requires_grad
    model.train()

    def broken(x):
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError, match="forward failed"):
        eval_outputs(model, data, 4, broken)
    assert model.training  # restored after a failure too
