"""The label-aware replay memory: budgets, kept labels, deduplication, herding."""
import types

import torch

from benchmarks import streams
from benchmarks.streams.base import LabelledSet, TensorPool
from strategies.memory import LabelMemory, MemoryPlugin, dedupe, herding_order

STREAM = "digits:B0-C2?train=400&test=100"


def fill(memory, benchmark, info, sessions):
    """Update ``memory`` after each of the first ``sessions`` sessions (random selection)."""
    for t in range(sessions):
        state = types.SimpleNamespace(info=info, session=t, n_seen=info.seen_after(t),
                                      model=None, device="cpu")
        memory.post_adapt(state, benchmark.train_stream[t])
    return memory.buffer


def test_per_class_budget_and_labels_kept_as_the_sample_had_them():
    benchmark, info = streams.build(STREAM)
    buffer = fill(LabelMemory(7, "per_class", "random"), benchmark, info, 3)
    labelled = (buffer.targets * buffer.mask).sum(0)
    assert (labelled[:6] >= 7).all()  # every seen class has its 7 (and maybe shared ones)
    assert len(buffer) <= 7 * 6 and len(torch.unique(buffer.index)) == len(buffer)
    for t in range(3):
        source = benchmark.train_stream[t].dataset
        from_t = buffer.mask[:, info.sessions[t]].all(1)
        for i, target in zip(buffer.index[from_t], buffer.targets[from_t]):
            row = (source.index == i).nonzero()[0, 0]
            # the session's block is as in the session; no label outside the kept blocks
            assert torch.equal(target[info.sessions[t]], source.targets[row][info.sessions[t]])
    assert (buffer.targets * ~buffer.mask).sum() == 0


def test_total_budget_is_never_exceeded_and_old_classes_shrink():
    benchmark, info = streams.build(STREAM)
    memory = LabelMemory(20, "total", "random")
    fill(memory, benchmark, info, 1)
    assert len(memory.buffer) <= 20 and len(memory.per_class[0]) == 10
    fill(memory, benchmark, info, 5)  # sessions 0..4 again: 10 classes -> 2 each
    assert len(memory.buffer) <= 20
    # each class keeps its priority list as selected (quota 20 // n_seen at the time);
    # the buffer takes the first 2 of each
    assert [len(s) for s in memory.per_class.values()] == [10, 10, 5, 5, 3, 3, 2, 2, 2, 2]
    assert (memory.buffer.targets * memory.buffer.mask).sum(0).min() >= 2


def test_a_total_budget_below_the_class_count_holds_nothing_stale():
    benchmark, info = streams.build(STREAM)
    memory = LabelMemory(3, "total", "random")
    fill(memory, benchmark, info, 1)  # 2 classes: quota 1 each
    assert 1 <= len(memory.buffer) <= 2
    fill(memory, benchmark, info, 2)  # 4 classes: quota 3 // 4 = 0
    assert len(memory.buffer) == 0


def test_single_label_memory_keeps_class_indices():
    benchmark, info = streams.build("digits-lt:B4-C2?n_max=60&test_per_class=10")
    buffer = fill(LabelMemory(3, "per_class", "random"), benchmark, info, 2)
    assert torch.bincount(buffer.targets, minlength=10)[:6].tolist() == [3] * 6


def test_dedupe_merges_label_blocks_of_one_image():
    pool = TensorPool(torch.zeros(3, 1, 2, 2))
    rows = LabelledSet(pool, torch.tensor([0, 2, 0]),
                       torch.tensor([[1., 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]),
                       torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]]),
                       torch.tensor([0, 0, 1]))
    merged = dedupe(rows)
    assert merged.index.tolist() == [0, 2]
    assert merged.targets.tolist() == [[1, 0, 0, 1], [0, 1, 0, 0]]
    assert merged.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert merged.session.tolist() == [0, 0]


def test_herding_picks_the_samples_that_keep_the_mean_closest():
    feats = torch.tensor([[0.0, 1.0], [1.0, 0.1], [1.0, -0.1], [0.0, -1.0]])
    order = herding_order(feats, 2)
    # normalised rows: (0,1), (.995,.0995), (.995,-.0995), (0,-1); mean mu = (.4975, 0).
    # step 1: |mu - f1|^2 = .2475 + .0099 = .257 is the least (row 2 ties; argmin -> row 1).
    # step 2: (f1 + f3)/2 = (.4975, -.45): .2025 beats (f1 + f2)/2 = (.995, 0): .2475
    assert order.tolist() == [1, 3]
    assert herding_order(feats, 10).sort().values.tolist() == [0, 1, 2, 3]


def test_forward_labels_give_exemplars_the_truth_of_later_classes_and_own_keeps_them():
    built = streams.build(STREAM)
    benchmark, info = built
    for labels in ("own", "forward"):
        plugin = MemoryPlugin(LabelMemory(5, "per_class", "random"), labels)
        fill(plugin.memory, benchmark, info, 1)  # exemplars of session 0
        before = plugin.memory.buffer
        for t in (1, 2):  # sessions 1 and 2 start: the plugin sees their data first
            state = types.SimpleNamespace(info=info, session=t,
                                          adapted_dataset=benchmark.train_stream[t].dataset)
            plugin.after_train_dataset_adaptation(state)
        after = plugin.memory.buffer
        assert torch.equal(after.index, before.index)
        seen = info.seen_after(2)
        if labels == "own":
            assert torch.equal(after.targets, before.targets)
            assert torch.equal(after.mask, before.mask)
        else:  # blocks 1 and 2 now hold the truth, labelled; block 0 as selected
            truth = built.train_labels[after.index]
            assert torch.equal(after.targets[:, :seen], truth[:, :seen])
            assert after.mask[:, :seen].all() and not after.mask[:, seen:].any()
            assert (truth[:, 2:seen] == 1).any() and (truth[:, 2:seen] == 0).any()
            assert torch.equal(plugin.trained_memory.targets, after.targets)
