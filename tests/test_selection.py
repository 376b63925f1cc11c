"""Class-balancing memory selection: PRS against a transcription of its official code, OCDM's
greedy step, the memory's per-session adaptation, the CLI flag and its bad input."""
import bisect
import random
import types
from collections import OrderedDict
from itertools import accumulate

import pytest
import torch

from benchmarks import streams
from benchmarks.streams.base import LabelledSet, TensorPool
from strategies.memory import LabelMemory, MemoryPlugin
from strategies.options import canonical_selection, parse_selection
from strategies.selection import (PartitioningReservoir, divergence, divergence_without,
                                  ocdm_remove, target_distribution)

# ---------------------------------------------------------------------------------------
# Transcription of the official PRS (github.com/cdjkim/PRS at 136cee1, code/models/reservoir/
# mlab_stratified_reservoir.py: SubStream, SubStream_Container, PRS_mlab), reduced to the
# labels: a sample is its multi-hot row; ``rsvr['cats']`` the stored rows. Its draws go
# through ``choices``, which is ``random.choices`` (same bisection) fed by the uniform numbers
# of a torch generator, so that it and the suite's reservoir can be run on the same draws.
# ---------------------------------------------------------------------------------------


class Uniforms:
    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)

    def choices(self, population, weights):
        u = float(torch.rand((), generator=self.generator, dtype=torch.float64))
        cum_weights = list(accumulate(float(w) for w in weights))
        total = cum_weights[-1]
        return [population[bisect.bisect(cum_weights, u * total, 0, len(cum_weights) - 1)]]


class SubStream:
    def __init__(self, name):
        self.name = name
        self.idxs = list()
        self._probs = list()
        self.proportion = 0.
        self.n = 0.

    def __len__(self):
        return len(self.idxs)

    def remove(self, idx):
        _id = self.idxs.index(idx)
        self.idxs.pop(_id)
        self._probs.pop(_id)

    def add(self, idx, p):
        self.idxs.append(idx)
        self._probs.append(p)

    def update_stat(self, n):
        self.n += n


class SubStreamContainer:
    def __init__(self, rsvr_total_size):
        self.rsvr_total_size = rsvr_total_size
        self._data = OrderedDict()

    def __getitem__(self, key):
        if key not in self._data:
            self._data[key] = SubStream(name=key)
        return self._data[key]

    def lsum(self):
        total = 0.
        for st_idx in self.keys():
            total += len(self[st_idx])
        return total

    def keys(self):
        return (key for key, value in self._data.items() if len(value) > 0)

    def values(self):
        return (value for _, value in self._data.items() if len(value) > 0)

    def items(self):
        return ((key, value) for key, value in self._data.items() if len(value) > 0)

    def get_deltas(self):
        lsum = self.lsum()
        return {key: len(value) - value.proportion * lsum for key, value in self.items()}

    def get_probs(self):
        deltas = self.get_deltas()
        probs = torch.FloatTensor([deltas[key] for key in self.keys()])
        probs = torch.softmax(probs, dim=0)
        return {key: probs[i] for i, key in enumerate(self.keys())}

    def get_diff(self):
        lsum = self.lsum()
        diff_sum = 0.
        for value in self.values():
            diff_sum += abs(len(value) - value.proportion * lsum)
        return diff_sum

    def update_stats(self, keys, cat):
        for key in keys:
            self[key].update_stat(cat[key])

    def update_proportions(self, rho):
        total_n_rho = 0.
        for value in self.values():
            total_n_rho += value.n ** rho
        for value in self.values():
            value.proportion = (value.n ** rho) / total_n_rho


class OfficialPRS:
    """PRS_mlab.update / sample_in / save_sample / remove_sample / replace_sample /
    sample_out / partition, on label rows."""

    def __init__(self, size, rho, nb_classes, draws):
        self.rsvr_total_size, self.q, self.nb_classes = size, rho, nb_classes
        self.choices = draws.choices
        self.rsvr = {"cats": torch.zeros((size, nb_classes), dtype=torch.long)}
        self.substreams = SubStreamContainer(size)
        self.n = 0
        self.rsvr_cursize = 0

    @staticmethod
    def _multihot_to_idxlist(multihot):
        return (multihot == 1).nonzero().flatten().tolist()

    def _idxlist_to_multihot(self, idcs):
        multihot = torch.zeros(self.nb_classes, dtype=torch.long)
        multihot[idcs] = 1
        return multihot

    def update(self, cats):
        """One sample's multi-hot row; returns the slot it took (None: it stayed out), for
        the comparison."""
        keys = self._multihot_to_idxlist(cats)
        slot = None
        if self.n < self.rsvr_total_size:
            self.save_sample(self.n, cats)
            slot = self.n
            self.rsvr_cursize += 1
        else:
            if self.sample_in(keys):
                slot = self.replace_sample(cats)
        self.n += 1
        self.substreams.update_stats(keys, cats)
        self.partition()
        return slot

    def sample_in(self, keys):
        probs = [0. for _ in keys]
        negn = [0 for _ in keys]
        for i, key in enumerate(keys):
            mi = self.rsvr_total_size * self.substreams[key].proportion
            ni = self.substreams[key].n
            probs[i] = mi / ni if ni > mi else 1
            negn[i] = -ni
        probs = torch.FloatTensor(probs)
        weights = torch.FloatTensor(negn)
        weights = torch.softmax(weights, dim=0)
        s = torch.sum(probs * weights)
        return self.choices([True, False], [s, 1 - s])[0]

    def save_sample(self, rsvr_idx, cats=None):
        if cats is not None:
            self.rsvr["cats"][rsvr_idx] = cats.clone()
        else:
            cats = self.rsvr["cats"][rsvr_idx]
        for key in self._multihot_to_idxlist(cats):
            self.substreams[key].add(rsvr_idx, cats[key])

    def remove_sample(self, rsvr_idx):
        for key in self._multihot_to_idxlist(self.rsvr["cats"][rsvr_idx]):
            self.substreams[key].remove(rsvr_idx)

    def replace_sample(self, cats):
        rsvr_idx = self.sample_out()
        self.save_sample(rsvr_idx, cats)
        return rsvr_idx

    def sample_out(self):
        probs = self.substreams.get_probs()
        selected_key = self.choices(list(probs.keys()), weights=list(probs.values()))[0]
        y_mask = torch.zeros(self.rsvr_total_size, dtype=torch.bool)
        y_mask[self.substreams[selected_key].idxs] = True
        deltas = self.substreams.get_deltas()
        query = [key for key, delta in deltas.items() if delta <= 0]
        query = self._idxlist_to_multihot(query)
        y_cats = self.rsvr["cats"][y_mask]
        scores = (1 - y_cats) * query
        scores = scores.sum(axis=1)
        idxs_y = self._multihot_to_idxlist(scores == torch.max(scores))
        idxs = self._multihot_to_idxlist(y_mask)
        k = [idxs[idx_y] for idx_y in idxs_y]
        best = (k[0], self.rsvr_total_size)
        for idx in k:
            self.remove_sample(idx)
            diff = self.substreams.get_diff()
            if diff < best[1]:
                best = (idx, diff)
            self.save_sample(idx, cats=None)
        z = best[0]
        self.remove_sample(z)
        return z

    def partition(self):
        self.substreams.update_proportions(self.q)


# ---------------------------------------------------------------------------------------


def label_stream(n=400, classes=7, seed=0):
    """A long-tailed multi-label stream: class c in a sample with probability ~ 0.6 / (c+1),
    at least one label per sample, co-occurrences included."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        row = [int(rng.random() < 0.6 / (c + 1)) for c in range(classes)]
        if any(row):
            rows.append(row)
    return torch.tensor(rows)


@pytest.mark.parametrize("rho", [0.0, 1.0, 0.5, -0.03])
def test_prs_quotas_and_replacement_match_the_official_code_sample_by_sample(rho):
    cats = label_stream()
    official = OfficialPRS(30, rho, cats.shape[1], Uniforms(7))
    ours = PartitioningReservoir(cats.shape[1], rho, torch.Generator().manual_seed(7))
    replaced = 0
    for step, row in enumerate(cats):
        keys = torch.nonzero(row).flatten().tolist()
        slot = official.update(row)
        assert ours.offer(keys, 30) == slot, f"sample {step}"
        replaced += slot is not None and step >= 30
        # the quotas: each class's running count and share (p_i; m_i = 30 p_i), bit for bit
        for key, sub in official.substreams._data.items():
            assert float(ours.n[key]) == float(sub.n)
            assert float(ours.share[key]) == float(sub.proportion)
        assert torch.equal(ours.labels, official.rsvr["cats"][:len(ours.labels)].bool())
    assert ours.order == list(official.substreams._data)
    assert replaced > 20  # the replacement rule ran, not only the filling


def test_prs_with_rho_zero_balances_the_memory_more_than_rho_one():
    cats = label_stream(1000)
    spread = {}
    for rho in (0.0, 1.0):
        prs = PartitioningReservoir(cats.shape[1], rho, torch.Generator().manual_seed(0))
        for row in cats:
            prs.offer(torch.nonzero(row).flatten().tolist(), 40)
        counts = prs.counts().double()
        spread[rho] = float(counts.max() / counts.min())
    stream = cats.sum(0).double()
    assert spread[0.0] < spread[1.0], spread
    assert spread[0.0] < float(stream.max() / stream.min()) / 2, spread


def test_prs_eviction_shrinks_to_capacity_by_the_replacement_rule():
    cats = label_stream(200)
    prs = PartitioningReservoir(cats.shape[1], 0.0, torch.Generator().manual_seed(1))
    for row in cats:
        prs.offer(torch.nonzero(row).flatten().tolist(), 30)
    before = prs.labels.clone()
    removed = prs.evict(20)
    assert len(removed) == 10 and len(prs.labels) == 20
    kept = torch.ones(30, dtype=torch.bool)
    rows = list(range(30))
    for slot in removed:
        kept[rows.pop(slot)] = False
    assert torch.equal(prs.labels, before[kept])


# --- OCDM ------------------------------------------------------------------------------

# A hand-built memory of six samples over three classes: class 0 is over-represented
# (counts 5, 2, 1), with one sample (row 1) showing classes 0 and 1.
MEMORY = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 1]]).bool()


@pytest.mark.parametrize("kind", ["kl_target", "kl_memory"])
def test_ocdm_greedy_step_removes_the_sample_that_most_reduces_the_divergence(kind):
    target = target_distribution(torch.tensor([9.0, 3.0, 2.0]), 0.0)  # uniform over 3
    assert torch.allclose(target, torch.full((3,), 1 / 3, dtype=torch.float64))
    before = divergence(MEMORY.sum(0), target, kind)
    kept = ocdm_remove(MEMORY, target, 1, kind)
    (out,) = set(range(6)) - set(kept.tolist())
    after = divergence(MEMORY[kept].sum(0), target, kind)
    assert after < before
    # brute force over the six removals: the greedy step takes the best (first on ties)
    each = [float(divergence(MEMORY[[j for j in range(6) if j != i]].sum(0), target, kind))
            for i in range(6)]
    assert out == min(range(6), key=lambda i: (each[i], i))
    assert out in (0, 2, 3)  # a sample of class 0 alone: never the only sample of class 2
    # repeated, each removal lowers the divergence and no class is emptied
    steps = [float(divergence(MEMORY[ocdm_remove(MEMORY, target, k, kind)].sum(0), target,
                              kind)) for k in range(4)]
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == 4
    assert MEMORY[ocdm_remove(MEMORY, target, 3, kind)].sum(0).min() >= 1


@pytest.mark.parametrize("kind", ["kl_target", "kl_memory"])
def test_the_divergence_after_each_removal_is_the_direct_one(kind):
    labels = label_stream(60, classes=5, seed=3).bool()
    labels[:, 4] = False  # a class the memory lacks: the smoothing carries it
    counts = labels.sum(0)
    target = target_distribution(torch.tensor([50.0, 20, 9, 4, 2]), 0.5)
    direct = divergence(counts - labels.long(), target, kind)
    assert torch.allclose(divergence_without(counts, labels, target, kind), direct,
                          rtol=1e-9, atol=1e-9)


def test_ocdm_target_follows_rho_and_the_greedy_follows_the_target():
    n = torch.tensor([100.0, 25.0, 0.0])
    assert target_distribution(n, 1.0).tolist() == [0.8, 0.2, 0.0]
    assert target_distribution(n, 0.5).tolist() == pytest.approx([10 / 15, 5 / 15, 0.0])
    labels = torch.tensor([[1, 0]] * 5 + [[0, 1]] * 5).bool()
    proportional = ocdm_remove(labels, target_distribution(n[:2], 1.0), 5)
    uniform = ocdm_remove(labels, target_distribution(n[:2], 0.0), 5)
    assert labels[proportional].sum(0).tolist() == [4, 1]
    assert sorted(labels[uniform].sum(0).tolist()) == [2, 3]


# --- the memory's per-session adaptation ------------------------------------------------

STREAM = "digits:B0-C2?train=400&test=100"


def fill(memory, benchmark, info, sessions, start=0):
    """Update ``memory`` after sessions ``start`` .. ``sessions - 1``."""
    for t in range(start, sessions):
        state = types.SimpleNamespace(info=info, session=t, n_seen=info.seen_after(t),
                                      model=None, device="cpu")
        memory.post_adapt(state, benchmark.train_stream[t])
    return memory.buffer


def kl_to_uniform(buffer, n):
    counts = (buffer.targets * buffer.mask)[:, :n].sum(0).double()
    q = counts / counts.sum()
    return float((q * (q * n).log()).nan_to_num().sum())


@pytest.mark.parametrize("selection", ["prs", "ocdm", "ocdm?batch=0"])
@pytest.mark.parametrize("mode, size", [("per_class", 5), ("total", 24)])
def test_balanced_memory_respects_its_budget_and_keeps_labels_as_seen(selection, mode, size):
    benchmark, info = streams.build(STREAM)
    memory = LabelMemory(size, mode, selection, generator=torch.Generator().manual_seed(0))
    for t in range(5):
        buffer = fill(memory, benchmark, info, t + 1, start=t)
        capacity = size * info.seen_after(t) if mode == "per_class" else size
        assert len(buffer) == capacity  # the sessions hold more samples than that
        assert len(torch.unique(buffer.index)) == len(buffer)
        assert (buffer.targets * ~buffer.mask).sum() == 0
        assert not buffer.mask[:, info.seen_after(t):].any()
    # every stored label block is the one a session gave that image
    for t in range(5):
        source = benchmark.train_stream[t].dataset
        block = info.sessions[t]
        rows = buffer.mask[:, block].all(1)
        for i, target in zip(buffer.index[rows], buffer.targets[rows]):
            row = (source.index == i).nonzero()[0, 0]
            assert torch.equal(target[block], source.targets[row][block])


def test_ocdm_memory_is_more_balanced_than_per_class_random_and_prs_than_proportional():
    benchmark, info = streams.build(STREAM)

    def balance(selection):
        memory = LabelMemory(7, "per_class", selection,
                             generator=torch.Generator().manual_seed(0))
        return kl_to_uniform(fill(memory, benchmark, info, 5), 10)

    assert balance("ocdm") < balance("random")
    assert balance("prs") < balance("prs?rho=1")


def test_balanced_selection_is_seeded():
    benchmark, info = streams.build(STREAM)
    for selection in ("prs", "ocdm"):
        a, b, c = (fill(LabelMemory(5, "per_class", selection,
                                    generator=torch.Generator().manual_seed(s)),
                        benchmark, info, 3) for s in (0, 0, 1))
        assert torch.equal(a.index, b.index) and not torch.equal(a.index, c.index)


def test_a_held_image_joins_its_new_labels_only_when_it_enters():
    # pool images 0..3; the memory holds image 0 with class 0 (session 0). Session 1 shows
    # image 0 again with class 2, and images 1..3 with class 3.
    pool = TensorPool(torch.zeros(4, 1, 2, 2))
    mask1 = torch.tensor([[0, 0, 1, 1]] * 4).bool()
    session1 = LabelledSet(pool, torch.arange(4),
                           torch.tensor([[0., 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1],
                                         [0, 0, 0, 1]]), mask1, torch.ones(4, dtype=torch.long))
    info = types.SimpleNamespace(label_mode="multi", num_classes=4, sessions=[[0, 1], [2, 3]])
    for selection in ("prs", "ocdm"):
        memory = LabelMemory(10, "total", selection, generator=torch.Generator().manual_seed(0))
        memory.buffer = LabelledSet(pool, torch.tensor([0]), torch.tensor([[1., 0, 0, 0]]),
                                    torch.tensor([[1, 1, 0, 0]]).bool(), torch.tensor([0]))
        state = types.SimpleNamespace(info=info, session=1, n_seen=4)
        memory.post_adapt(state, types.SimpleNamespace(dataset=session1))
        buffer = memory.buffer
        # room for all: image 0 enters (PRS: the memory is not full; OCDM: class 2 brings
        # the memory closer to the target) and keeps one row with both blocks
        assert sorted(buffer.index.tolist()) == [0, 1, 2, 3]
        row = int((buffer.index == 0).nonzero()[0, 0])
        assert buffer.targets[row].tolist() == [1, 0, 1, 0]
        assert buffer.mask[row].all() and buffer.session[row] == 0


def test_single_label_balanced_memory_holds_class_indices():
    benchmark, info = streams.build("digits-lt:B4-C2?n_max=60&test_per_class=10")
    for selection in ("prs", "ocdm"):
        buffer = fill(LabelMemory(3, "per_class", selection,
                                  generator=torch.Generator().manual_seed(0)),
                      benchmark, info, 2)
        assert len(buffer) == 18 and buffer.targets.dim() == 1
        assert torch.bincount(buffer.targets, minlength=10)[6:].sum() == 0


def test_relabelled_memory_labels_are_what_the_next_update_balances():
    benchmark, info = streams.build(STREAM)
    plugin = MemoryPlugin(LabelMemory(5, "per_class", "prs",
                                      generator=torch.Generator().manual_seed(0)), "forward")
    fill(plugin.memory, benchmark, info, 1)
    state = types.SimpleNamespace(info=info, session=1,
                                  adapted_dataset=benchmark.train_stream[1].dataset)
    plugin.after_train_dataset_adaptation(state)  # exemplars get the truth of classes 2, 3
    relabelled = plugin.memory.buffer
    held = fill(plugin.memory, benchmark, info, 2, start=1)
    old = torch.isin(held.index, relabelled.index)
    assert old.any()
    for i in held.index[old]:
        a = held.targets[held.index == i][0]
        b = relabelled.targets[relabelled.index == i][0]
        assert torch.equal(a[:4], b[:4])  # the relabelled rows kept their forward labels


# --- options and the CLI ------------------------------------------------------------------


def test_selection_names_are_canonical_and_options_range_checked():
    assert parse_selection("prs") == ("prs", {"rho": 0.0})
    assert canonical_selection("prs?rho=0") == "prs"
    assert canonical_selection("ocdm?eps=1e-3&batch=0") == "ocdm?batch=0&eps=0.001"
    for bad, message in [("nope", "unknown selection 'nope'"),
                         ("prs?rho=2", "rho=2 is out of range"),
                         ("ocdm?batch=-1", "batch=-1 is out of range"),
                         ("ocdm?divergence=js", "divergence=js not in kl_target|kl_memory"),
                         ("herding?rho=1", "unknown option 'rho=1' for herding"),
                         ("prs?rho=0&rho=1", "rho given twice")]:
        with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("|", r"\|")):
            parse_selection(bad)


THREE_SESSIONS = "digits:B6-C2?train=300&test=150"


@pytest.mark.parametrize("method, selection", [("replay", "prs"), ("replay", "ocdm"),
                                               ("rebll", "ocdm?batch=0")])
def test_a_balanced_memory_trains_through_a_three_session_stream(cell, method, selection):
    record = cell(method, stream=THREE_SESSIONS, memory=5, selection=selection)
    assert record["train"]["selection"] == selection
    held = [s["memory"] for s in record["sessions"]]
    assert [s["n_seen"] for s in record["sessions"]] == [6, 8, 10]
    assert [h["size"] for h in held] == [30, 40, 50]  # 5 per seen class, shared
    assert all(h["selection"].startswith(selection.split("?")[0] + "?") for h in held)
    assert all(len(h["per_class"]) == n for h, n in zip(held, (6, 8, 10)))
    assert all(0 <= h["balance"] < 0.5 for h in held)
    assert record["summary"]["last_mem_balance"] == held[-1]["balance"]
    assert record["summary"]["last_mem_FNR"] is not None


def test_memory_balance_is_the_kl_to_uniform_and_the_ratio_of_extremes():
    from benchmarks.diagnostics import last_memory, memory_balance

    assert memory_balance([4, 4, 4]) == {"balance": 0.0, "ratio": 1.0}
    skewed = memory_balance([6, 2, 0])  # q = (.75, .25, 0): .75 ln 2.25 + .25 ln .75
    assert skewed["balance"] == pytest.approx(0.75 * 0.8109302 + 0.25 * -0.2876821)
    assert skewed["ratio"] is None and memory_balance([0, 0]) == {"balance": None, "ratio": None}
    assert memory_balance([8, 2])["ratio"] == 4.0
    assert last_memory([{"memory": {"balance": 0.25}, "memory_labels": None}]) == {
        "last_mem_balance": 0.25}
    assert last_memory([{"memory": None, "memory_labels": None}]) == {}


def test_the_flag_and_the_config_key_set_the_recipes_selection_in_the_cells_id(tmp_path):
    import fake_cell
    from benchmarks.run import main
    from benchmarks.runner.store import Store

    toy = str(__import__("pathlib").Path(__file__).with_name("toy_methods.py"))
    base = ["--methods", "toy", "--plugin", toy, "--seeds", "0", "--quiet"]
    ids = {}
    for name, extra, train in [
            ("default", [], {}),
            ("prs", ["--memory-selection", "prs?rho=0"], {"selection": "prs"}),
            ("prs-rho", ["--memory-selection", "prs?rho=0.50"], {"selection": "prs?rho=0.5"}),
            ("herding", ["--memory-selection", "herding"], {"selection": "herding"})]:
        assert main([*base, *extra, "--out", str(tmp_path / name)], cell=fake_cell.run_cell) == 0
        (record,) = Store(tmp_path / name).load_all().values()
        ids[name] = record["id"]
        assert record["spec"]["train"] == train  # canonical, under the recipe's key
    assert len(set(ids.values())) == 4  # the flag, when given, is part of the id
    config = tmp_path / "grid.yaml"
    config.write_text(f"methods: [toy]\nplugins: [{toy}]\nseeds: [0]\n"
                      "memory_selection: 'prs?rho=0.0'\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "yaml"), "--quiet"],
                cell=fake_cell.run_cell) == 0
    (record,) = Store(tmp_path / "yaml").load_all().values()
    assert record["id"] == ids["prs"]  # prs?rho=0.0 is prs: defaults dropped


@pytest.mark.parametrize("argv, message", [
    (["--memory-selection", "greedy"], "argument --memory-selection: memory selection "
                                       "'greedy': unknown selection 'greedy'; accepted: "
                                       "herding, random, prs, ocdm"),
    (["--memory-selection", "prs?rho=3"], "option rho=3 is out of range; accepted: float "
                                          "from -1.0 to 1.0"),
    (["--memory-selection", "ocdm?batch=-2"], "option batch=-2 is out of range"),
    (["--memory-selection", "ocdm?eps=0"], "option eps=0 is out of range"),
    (["--memory-selection", "ocdm?divergence=l2"], "option divergence=l2 not in "),
    (["--memory-selection", "prs?power=1"], "unknown option 'power=1' for prs"),
    (["--memory-selection", "random?rho=0"], "unknown option 'rho=0' for random"),
])
def test_bad_selection_exits_2_with_one_line_before_any_work(tmp_path, capsys, argv, message):
    from benchmarks.run import main

    def forbidden(spec, progress=False):
        raise AssertionError("no cell should run")

    assert main(["--methods", "replay", "--out", str(tmp_path / "out"), *argv],
                cell=forbidden) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "out").exists()


def test_a_bad_selection_in_a_config_file_exits_2(tmp_path, capsys):
    from benchmarks.run import main

    config = tmp_path / "grid.yaml"
    config.write_text("methods: [replay]\nmemory_selection: prs?rho=-7\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "option rho=-7 is out of range" in err
