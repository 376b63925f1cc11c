"""EEIL: the balanced fine-tuning subset and the distillation criterion against a
transcription of the long-tailed CIL code (xialeiliu/Long-Tailed-CIL src/approach/eeil.py),
the distillation by hand, and the fine-tuning stage inside a run."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader, TensorDataset

import tiny
from strategies.eeil import (BalancedFinetuning, BlockDistillation, balanced_subset,
                             block_distillation)


# --- transcribed from xialeiliu/Long-Tailed-CIL src/approach/eeil.py ----------------------
def reference_get_train_loader(exemplars_ds, trn_loader, balanced=False):
    trn_dataset = trn_loader.dataset
    if balanced:
        indices = torch.randperm(len(trn_dataset))
        trn_dataset = torch.utils.data.Subset(trn_dataset, indices[:len(exemplars_ds)])
    ds = exemplars_ds + trn_dataset
    return DataLoader(ds, batch_size=trn_loader.batch_size, shuffle=True,
                      num_workers=trn_loader.num_workers, pin_memory=trn_loader.pin_memory)


def reference_criterion(t, outputs, targets, outputs_old, finetuning_balanced, lamb=1.0, T=2):
    loss = torch.nn.functional.cross_entropy(torch.cat(outputs, dim=1), targets)
    if t > 0 and outputs_old:
        last_head_idx = t if finetuning_balanced else (t - 1)
        for i in range(last_head_idx):
            loss += lamb * F.binary_cross_entropy(F.softmax(outputs[i] / T, dim=1),
                                                  F.softmax(outputs_old[i] / T, dim=1))
    return loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_new,n_memory", [(50, 12), (8, 12)])
def test_balanced_subset_matches_the_reference(n_new, n_memory):
    new = TensorDataset(torch.arange(100, 100 + n_new))
    exemplars = TensorDataset(torch.arange(n_memory))
    torch.manual_seed(3)
    loader = reference_get_train_loader(exemplars, DataLoader(new, batch_size=4), True)
    want = [int(loader.dataset[i][0]) for i in range(len(loader.dataset))]
    rows = balanced_subset(n_new, n_memory, torch.Generator().manual_seed(3))
    got = list(range(n_memory)) + (100 + rows).tolist()  # the memory, then the subset
    assert got == want
    assert len(rows) == min(n_new, n_memory) and len(set(rows.tolist())) == len(rows)


def _strategy(outputs, prev, targets, session):
    sessions = [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]
    n_old = sessions[session][0]
    return SimpleNamespace(
        mb_output=outputs, prev_output=prev, n_old=n_old, session=session,
        info=SimpleNamespace(label_mode="single", sessions=sessions),
        loss=F.cross_entropy(outputs[:, :sessions[session][-1] + 1], targets))


@pytest.mark.parametrize("t", [1, 2])
def test_distillation_matches_the_reference_balanced_stage(t):
    """In the fine-tuning the reference distils every old session, as the suite does in
    both stages; in its unbalanced stage it leaves out the last old session (departure)."""
    torch.manual_seed(0)
    bounds = [0, 3, 5, 8]
    outputs = torch.randn(6, 10, requires_grad=True)
    prev = torch.randn(6, 10)
    targets = torch.randint(0, bounds[t + 1], (6,))
    heads = [outputs[:, bounds[i]:bounds[i + 1]] for i in range(t + 1)]
    old_heads = [prev[:, bounds[i]:bounds[i + 1]] for i in range(t)]
    strategy = _strategy(outputs, prev, targets, t)
    BlockDistillation(0.5, 2.0).before_backward(strategy)
    balanced = reference_criterion(t, heads, targets, old_heads, True, lamb=0.5)
    assert strategy.loss.item() == pytest.approx(balanced.item(), abs=1e-5)
    unbalanced = reference_criterion(t, heads, targets, old_heads, False, lamb=0.5)
    last = block_distillation(outputs, prev, [list(range(bounds[t - 1], bounds[t]))], 2.0)
    assert strategy.loss.item() == pytest.approx(unbalanced.item() + 0.5 * last.item(),
                                                 abs=1e-5)


def test_block_distillation_by_hand():
    # equal logits in a block: both softmaxes uniform (1/2), BCE = -log(1/2) = log 2
    z = torch.zeros(1, 4)
    assert block_distillation(z, z, [[0, 1]], 2.0).item() == pytest.approx(0.6931472)
    # block [2, 3]: current (0, 0) -> p = (1/2, 1/2); previous (2 ln 3, 0) at T = 2 -> q =
    # (3/4, 1/4); BCE mean over the two entries: -(3/4 + 1/4) log(1/2) = log 2 again
    prev = torch.tensor([[0.0, 0.0, 2 * torch.log(torch.tensor(3.0)).item(), 0.0]])
    assert block_distillation(z, prev, [[2, 3]], 2.0).item() == pytest.approx(0.6931472)
    # current (2 ln 3, 0) -> p = (3/4, 1/4); previous uniform: -(1/2 log 3/4 + 1/2 log 1/4)
    # per entry, averaged over the two entries
    want = -(0.5 * torch.log(torch.tensor(0.75)) + 0.5 * torch.log(torch.tensor(0.25)))
    assert block_distillation(prev, z, [[2, 3]], 2.0).item() == pytest.approx(want.item())
    # two blocks add up
    assert block_distillation(prev, z, [[0, 1], [2, 3]], 2.0).item() == pytest.approx(
        0.6931472 + want.item())


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_fine_tuning_trains_on_memory_plus_an_equal_share_before_the_memory_update(mode):
    seen = []

    class Probe(SupervisedPlugin):
        def after_training_iteration(self, strategy, **kwargs):
            seen.append((strategy.mbatch[0].shape[0], strategy.optimizer.param_groups[0]["lr"]))

    strategy, benchmark, _ = tiny.strategy("eeil", tiny.STREAMS[mode],
                                           {"ft_epochs": 2, "ft_lr_factor": 0.1}, [Probe()],
                                           memory=5, selection="random")
    finetuning = next(p for p in strategy.plugins if isinstance(p, BalancedFinetuning))
    memory = finetuning.memory_plugin.memory
    lr = strategy.optimizer.param_groups[0]["lr"]
    strategy.train(benchmark.train_stream[0])
    assert "eeil_ft_s" not in strategy.notes  # no fine-tuning in the first session
    before = memory.buffer.index.clone()
    seen.clear()
    strategy.train(benchmark.train_stream[1])
    notes = strategy.notes
    assert notes["eeil_ft_samples"] == 2 * len(before)  # memory + as many new samples
    assert len(notes["eeil_ft_loss"]) == 2 and notes["eeil_ft_s"] > 0
    stage1 = [n for n, lr_ in seen if lr_ == lr]
    ft = [n for n, lr_ in seen if lr_ == pytest.approx(0.1 * lr)]
    assert len(stage1) + len(ft) == len(seen)
    assert sum(stage1) == len(benchmark.train_stream[1].dataset) + len(before)  # 1 epoch
    assert sum(ft) == 2 * notes["eeil_ft_samples"]  # 2 epochs, after stage 1
    assert all(lr_ == lr for _, lr_ in seen[:len(stage1)])  # stage 1 first, then the stage
    assert strategy.optimizer.param_groups[0]["lr"] == lr  # restored
    assert len(memory.buffer) > len(before)  # the memory update came after


def test_without_memory_there_is_no_fine_tuning(cell):
    record = cell("eeil", stream=tiny.SINGLE, memory=0, hparams={"ft_epochs": 2})
    assert all("eeil_ft_s" not in s.get("notes", {}) for s in record["sessions"])
