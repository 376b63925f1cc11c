"""Memory-label diagnostics: rates on a hand-built memory with known true labels, the
protocol by which memory and relabeling plugins contribute, and the records of a run."""
import types

import pytest
import torch

from benchmarks.diagnostics import label_rates, last_memory_rates, memory_label_rates
from benchmarks.streams.base import LabelledSet, TensorPool

# Three memory rows, five classes, four seen. True labels by pool index (pool rows 0..3;
# pool row 3 is not in the memory).
TRUE = torch.tensor([[1, 0, 1, 0, 1], [0, 1, 0, 0, 1], [0, 0, 0, 0, 0], [1, 1, 0, 1, 0]])
INDEX = torch.tensor([0, 1, 3])
TARGETS = torch.tensor([[1., 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
# row 0: labelled for classes 0, 1 (its 1 in column 2 is unlabelled: reads as a negative)
MASK = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [1, 1, 0, 0, 0]]).bool()


def strategy(*plugins, n_seen=4, label_mode="multi"):
    return types.SimpleNamespace(plugins=list(plugins), n_seen=n_seen,
                                 info=types.SimpleNamespace(label_mode=label_mode))


def memory_plugin():
    pool = TensorPool(torch.zeros(4, 1, 1, 1))
    return types.SimpleNamespace(trained_memory=LabelledSet(
        pool, INDEX, TARGETS, MASK, torch.zeros(3, dtype=torch.long)))


def test_label_rates_count_soft_labels_by_their_probability():
    true = torch.tensor([[1, 0], [1, 0]])
    rates = label_rates(torch.tensor([[0.75, 0.5], [1.0, 0.0]]), true)
    # FP = .5 over 2 negatives; FN = .25 over 2 positives
    assert rates == {"FPR": pytest.approx(25.0), "FNR": pytest.approx(12.5)}
    assert label_rates(torch.zeros(1, 2), torch.zeros(1, 2))["FNR"] is None


def test_memory_rates_read_unlabelled_entries_as_negatives_over_seen_classes():
    # seen columns 0..3 of the true rows 0, 1, 3: [1,0,1,0], [0,1,0,0], [1,1,0,1]:
    # 6 positives, 6 negatives. Labels as trained: [1,0,0,0], [0,0,0,0], [1,1,0,0]:
    # missed row 0 col 2, row 1 col 1, row 2 col 3 -> FNR 3/6; no false positive.
    # (Column 4, unseen, would add a missed positive: it is left out.)
    rates = memory_label_rates(strategy(memory_plugin()), TRUE)
    assert rates == {"FPR": 0.0, "FNR": pytest.approx(50.0), "rows": 3}


def test_a_relabeling_plugin_contributes_the_labels_it_trained_on():
    class Relabel:
        def trained_labels(self, strategy, data):
            targets = data.targets.clone()
            targets[0, 2], targets[0, 3] = 0.5, 1.0  # a soft half-positive, a false positive
            return targets, torch.ones_like(data.mask)

    rates = memory_label_rates(strategy(memory_plugin(), Relabel()), TRUE)
    # FP = 1 (row 0 col 3) of 6 negatives; FN = .5 + 1 + 1 of 6 positives
    assert rates["FPR"] == pytest.approx(100 / 6) and rates["FNR"] == pytest.approx(250 / 6)


def test_no_rates_without_a_memory_or_on_single_label_streams():
    assert memory_label_rates(strategy(types.SimpleNamespace()), TRUE) is None
    assert memory_label_rates(strategy(types.SimpleNamespace(trained_memory=None)), TRUE) is None
    assert memory_label_rates(strategy(memory_plugin(), label_mode="single"), TRUE) is None
    assert last_memory_rates([{"memory_labels": None}]) == {}


def test_replay_records_its_memory_label_rates(cell):
    record = cell("replay")
    rates = [s["memory_labels"] for s in record["sessions"]]
    assert rates[0] is None
    # replay trains on the stored partial labels: no false positive, missed positives
    assert all(r["FPR"] == 0 and r["FNR"] > 0 for r in rates[1:])
    assert record["summary"]["last_mem_FNR"] == rates[-1]["FNR"]
