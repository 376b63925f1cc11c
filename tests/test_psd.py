"""Parallel self-distillation (strategies/psd.py, methods/psd.py), the ``asl`` baseline and
the one-session protocol ``B{n}``."""
import copy
import math

import numpy as np
import pytest
import torch

from benchmarks import streams
from benchmarks.metrics import summarize
from benchmarks.streams.base import StreamError, session_splits
from strategies.fit import fit
from strategies.losses import asymmetric_loss
from strategies.psd import (TeacherBank, affinity, graph_partition, label_graph, owner_table,
                            scatter_back, student_loss)

# Two obvious groups of classes: {0, 1, 2} appear together, and so do {3, 4, 5}; across the
# groups, classes almost never co-occur (1 image each pair).
GROUPS = ([0, 1, 2], [3, 4, 5])
COUNTS = np.array([50, 40, 60, 45, 55, 35])


def two_groups():
    cooc = np.ones((6, 6))
    for group in GROUPS:
        cooc[np.ix_(group, group)] = 30
    np.fill_diagonal(cooc, COUNTS)  # the diagonal is ignored
    return cooc


# --- label graph and partitions ------------------------------------------------------------

def test_affinities_match_a_hand_computation():
    cooc = np.array([[4, 2, 0], [2, 2, 2], [0, 2, 8]])
    counts = np.array([4, 2, 8])
    # P_ij = N_ij / N_j (diagonal 0): P_01 = 2/2 = 1, P_10 = 2/4 = 0.5, P_12 = 2/8 = 0.25,
    # P_21 = 2/2 = 1, P_02 = P_20 = 0.
    # CGP: A_01 = (sqrt 1 + sqrt .5) / 2 = 0.853553, A_12 = (sqrt .25 + sqrt 1) / 2 = 0.75
    cgp = np.array([[0, 0.853553, 0], [0.853553, 0, 0.75], [0, 0.75, 0]])
    # DGP: A_01 = ((1 - 1) + (1 - sqrt .5)) / 2 = 0.146447, A_12 = (0.5 + 0) / 2 = 0.25,
    # A_02 = 1, diagonal 1 - sqrt 0 = 1
    dgp = np.array([[1, 0.146447, 1], [0.146447, 1, 0.25], [1, 0.25, 1]])
    np.testing.assert_allclose(affinity(cooc, counts, "cgp"), cgp, atol=1e-6)
    np.testing.assert_allclose(affinity(cooc, counts, "dgp"), dgp, atol=1e-6)
    with pytest.raises(ValueError, match="unknown partition kind"):
        affinity(cooc, counts, "random")


def test_cgp_keeps_each_group_in_one_cluster_and_dgp_splits_them():
    cooc = two_groups()
    assert graph_partition(cooc, COUNTS, 2, "cgp", seed=0) == [[0, 1, 2], [3, 4, 5]]
    # DGP into as many clusters as a group has classes: no cluster holds a whole group, and
    # the clusters of several classes mix the groups (classes that do not co-occur)
    dgp = graph_partition(cooc, COUNTS, 3, "dgp", seed=0)
    assert sorted(c for cluster in dgp for c in cluster) == list(range(6)) and len(dgp) == 3
    for cluster in dgp:
        assert not any(set(group) <= set(cluster) for group in GROUPS)
        if len(cluster) > 1:
            assert set(cluster) & set(GROUPS[0]) and set(cluster) & set(GROUPS[1])


def test_same_seed_same_partition_and_k_is_capped():
    rng = np.random.default_rng(0)
    counts = rng.integers(20, 200, 12)
    cooc = rng.integers(0, 20, (12, 12))
    cooc = cooc + cooc.T
    for kind in ("cgp", "dgp"):
        first = graph_partition(cooc, counts, 4, kind, seed=3)
        assert first == graph_partition(cooc, counts, 4, kind, seed=3)
        assert len(first) == 4 and sorted(sum(first, [])) == list(range(12))
    assert graph_partition(cooc[:3, :3], counts[:3], 5, "cgp", 0) == [[0], [1], [2]]
    assert graph_partition(cooc[:3, :3], counts[:3], 1, "dgp", 0) == [[0, 1, 2]]


def test_label_graph_counts_labelled_positives_only():
    targets = torch.tensor([[1., 1, 0], [1, 0, 1], [1, 1, 1]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 0]]).bool()  # row 2 has class 2 unknown
    cooc, counts = label_graph(targets, mask)
    assert counts.tolist() == [3, 2, 1]
    assert cooc[0, 1] == 2 and cooc[0, 2] == 1 and cooc[1, 2] == 0


# --- teachers and the scatter back -----------------------------------------------------------

PARTITIONS = [[[0, 2], [1]], [[0], [1, 2]]]  # class 3 is not partitioned


def test_scatter_back_takes_each_class_from_its_one_teacher_per_partition():
    owner = owner_table(PARTITIONS, 4)
    assert owner.tolist() == [[0, 1, 0, -1], [2, 3, 3, -1]]
    # teacher t's logit for class c on sample b: 100 t + 10 b + c
    outputs = (100 * torch.arange(4.)[:, None, None] + 10 * torch.arange(2.)[None, :, None]
               + torch.arange(4.)[None, None, :])
    got = scatter_back(outputs, owner)
    assert got[:, 0].tolist() == [[0, 101, 2, 0], [200, 301, 302, 0]]
    assert got[:, 1].tolist() == [[10, 111, 12, 0], [210, 311, 312, 0]]
    bank = TeacherBank(torch.nn.Linear(3, 4), PARTITIONS, 4)
    assert bank.members.sum(0).tolist() == [2, 2, 2, 0]  # once per partition
    with pytest.raises(ValueError, match="two clusters"):
        owner_table([[[0, 1], [1]]], 3)
    with pytest.raises(ValueError, match="cover different classes"):
        owner_table([[[0, 1]], [[0]]], 3)


def test_one_pass_trains_each_teacher_as_its_own_run_would():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), (torch.rand(16, 4) < 0.4).float()
    mask = torch.ones(16, 4, dtype=torch.bool)
    data = _Batch(x, y, mask)
    model = torch.nn.Linear(5, 4)

    def loss_fn(logits, y, mask, classes):
        return asymmetric_loss(logits, y, mask & classes)

    bank = TeacherBank(model, PARTITIONS, 4)
    fit(bank, data, loss_fn, epochs=2, batch_size=8, step=TeacherBank.step,
        optimizer=torch.optim.SGD(bank.parameters(), lr=0.5),
        generator=torch.Generator().manual_seed(1))
    for i, classes in enumerate(bank.members):
        teacher = bank.teacher(i)
        alone = torch.nn.Linear(5, 4)
        alone.load_state_dict(model.state_dict())
        fit(alone, data, lambda z, y, m, c=classes: loss_fn(z, y, m, c), epochs=2,
            batch_size=8, optimizer=torch.optim.SGD(alone.parameters(), lr=0.5),
            generator=torch.Generator().manual_seed(1))
        for a, b in zip(teacher.parameters(), alone.parameters()):
            torch.testing.assert_close(a, b)
        # only the teacher's own classes are trained
        assert torch.equal(teacher.weight[~classes], model.weight[~classes])
        assert not torch.equal(teacher.weight[classes], model.weight[classes])


def test_batched_bank_equals_the_one_teacher_at_a_time_bank_with_batchnorm():
    # the reference: the bank as it was, 2K copies of the model, each forward and backward
    # on its own, one optimizer over all of them. In float64: Adam turns a float32 rounding
    # difference in a near-zero gradient into a full lr-sized step (7.8e-6 seen on a fresh
    # machine), so only float64 leaves the two banks' summation orders no such room.
    from benchmarks import models
    torch.manual_seed(0)
    model = models.build("smallcnn", 4, 1).double()
    x, y = (torch.randn(3, 8, 1, 12, 12, dtype=torch.float64),
            (torch.rand(3, 8, 4) < 0.4).double())
    mask = torch.ones(8, 4, dtype=torch.bool)

    def loss_fn(logits, y, mask, classes):
        return asymmetric_loss(logits, y, mask & classes)

    bank = TeacherBank(model, PARTITIONS, 4).train()
    alone = [copy.deepcopy(model).train() for _ in range(len(bank))]
    batched_opt = torch.optim.Adam(bank.parameters(), lr=1e-2)
    alone_opt = torch.optim.Adam([p for t in alone for p in t.parameters()], lr=1e-2)
    for b in range(3):
        batched_opt.zero_grad()
        got = TeacherBank.step(bank, loss_fn, x[b], y[b], mask)
        batched_opt.step()
        alone_opt.zero_grad()
        losses = []
        for teacher, classes in zip(alone, bank.members):
            loss = loss_fn(teacher(x[b]), y[b], mask, classes)
            loss.backward()
            losses.append(loss.detach())
        alone_opt.step()
        torch.testing.assert_close(got, torch.stack(losses).mean())
    for i, teacher in enumerate(alone):  # weights and BatchNorm statistics
        for (name, a), (_, b) in zip(bank.teacher(i).state_dict().items(),
                                     teacher.state_dict().items()):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=name)
    with torch.no_grad():
        for mode in (False, True):  # running statistics, then the batch's own
            bank.train(mode)
            want = scatter_back(torch.stack([t.train(mode)(x[0]) for t in alone]), bank.owner)
            torch.testing.assert_close(bank(x[0]), want, rtol=1e-9, atol=1e-10)


class _Batch:
    """A minimal LabelledSet stand-in for fit: tensors, indexed by batch."""

    def __init__(self, x, y, mask):
        self.x, self.y, self.mask = x, y, mask

    def __len__(self):
        return len(self.x)

    def batch(self, rows):
        rows = torch.as_tensor(rows)
        return self.x[rows], self.y[rows], self.mask[rows], torch.zeros(len(rows))


# --- the student loss ------------------------------------------------------------------------

def test_student_loss_matches_a_hand_computation():
    z = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    teachers = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])  # z_CGP, z_DGP
    # ASL: positive -log sigmoid(0) = log 2 = 0.693147; negative, p = sigmoid(2) = 0.880797,
    # p_m = p - 0.05 = 0.830797, p_m^4 * -log(1 - p_m) = 0.476409 * 1.776657 = 0.846415;
    # mean 0.769781. D_CGP = (1 + 0) / 2 = 0.5, D_DGP = (0 + 4) / 2 = 2.
    # L = 0.5 * 0.769781 + 0.25 * 0.5 + 0.25 * 2 = 1.009891
    p_m = torch.sigmoid(torch.tensor(2.0)) - 0.05
    asl = (math.log(2) + float(p_m ** 4 * -torch.log(1 - p_m))) / 2
    assert asl == pytest.approx(0.769781, abs=1e-6)
    covered = torch.tensor([True, True])
    got = student_loss(z, y, mask, teachers, covered)
    assert float(got) == pytest.approx(1.009891, abs=1e-6)
    # alpha = 0.8: 0.4 * 0.5 + 0.1 * 2 = 0.4; class 1 not partitioned: D_CGP = 1, D_DGP = 0
    assert float(student_loss(z, y, mask, teachers, covered, alpha=0.8)) == pytest.approx(
        0.5 * asl + 0.4, abs=1e-5)
    assert float(student_loss(z, y, mask, teachers, torch.tensor([True, False]))) == \
        pytest.approx(0.5 * asl + 0.25 * 1, abs=1e-5)


# --- the methods on tiny streams -------------------------------------------------------------

def _sessions(record):
    return [s["notes"]["psd"] for s in record["sessions"]]


def test_psd_finishes_the_one_session_protocol_with_both_partitions(cell):
    record = cell("psd", "digits:B10?train=150&test=100", hparams={"clusters": 3})
    (notes,) = _sessions(record)
    for kind in ("cgp", "dgp"):
        assert sorted(c for cluster in notes[kind] for c in cluster) == list(range(10))
        assert len(notes[kind]) == 3
    assert notes["classes"] == list(range(10)) and len(notes["teacher_loss"]) == 1
    assert record["summary"]["forgetting"] is None and record["summary"]["last_mAP"] > 0


def test_psd_finishes_an_incremental_stream_partitioning_memory_classes(cell):
    record = cell("psd", "digits:B4-C2?train=150&test=100", hparams={"clusters": 2},
                  memory=3)
    notes = _sessions(record)
    # the memory carries old classes' labels: they are partitioned with the new ones
    assert [n["classes"] for n in notes] == [list(range(4)), list(range(6)), list(range(8)),
                                             list(range(10))]
    assert all(len(n["cgp"]) == len(n["dgp"]) == 2 for n in notes)


def test_psd_falls_back_to_plain_asl_with_one_class_and_says_so(cell):
    record = cell("psd", "digits:B9-C1?train=150&test=100", hparams={"clusters": 2},
                  memory=0)
    first, second = _sessions(record)
    assert len(first["cgp"]) == 2
    assert second == {"fallback": "1 partitioned class(es): plain ASL this session"}
    assert record["summary"]["forgetting"] is not None


def test_asl_method_trains_by_the_asymmetric_loss_with_its_hyperparameters(cell):
    import methods
    strategy, _ = _built("asl", gamma_neg=2.0)
    z, y = torch.randn(4, 10), (torch.rand(4, 10) < 0.3).float()
    mask = torch.ones(4, 10, dtype=torch.bool)
    assert torch.equal(strategy._criterion(z, y, mask),
                       asymmetric_loss(z, y, mask, gamma_neg=2.0))
    assert methods.get("psd").label_modes == {"multi"} == methods.get("asl").label_modes
    assert cell("asl", "digits:B10?train=300&test=150")["summary"]["last_mAP"] > 0


# --- the one-session protocol ----------------------------------------------------------------

def test_one_session_protocol_holds_all_classes():
    assert session_splits(10, 10, 0) == [list(range(10))]
    _, parsed = streams.parse("digits:B10?train=300")
    assert parsed.protocol == "B10" and str(parsed).startswith("digits:B10?")
    with pytest.raises(StreamError, match="need B10"):
        streams.parse("digits:B6")
    benchmark, info = streams.build("digits-lt:B10?n_max=20&test_per_class=5")
    assert info.sessions == [list(range(10))] and len(benchmark.train_stream) == 1


def test_summary_of_one_session_has_no_forgetting():
    session = {"mAP": 50.0, "CF1": 40.0, "OF1": 45.0, "head_mAP": 60.0, "medium_mAP": 50.0,
               "tail_mAP": 40.0, "per_class": [50.0, 50.0]}
    summary = summarize([session], "multi")
    assert summary["forgetting"] is None and summary["avg_mAP"] == summary["last_mAP"] == 50.0


# --- departures from the official code, now options ------------------------------------------

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_teachers_are_queried_in_the_mode_asked_for(mode):
    from avalanche.core import SupervisedPlugin

    class Probe(SupervisedPlugin):  # after PSD's after_forward: the teachers' logits are set
        def __init__(self):
            super().__init__()
            self.seen = []

        def after_forward(self, strategy, **kwargs):
            psd = strategy.plugins[0]
            bank, was = psd.bank, psd.bank.training
            with torch.no_grad():
                modes = {m.training for m in bank.modules()}
                eval_out = bank.eval()(strategy.mb_x)
                train_out = bank.train()(strategy.mb_x)
            bank.train(was)
            self.seen.append((modes, psd._teacher_logits, train_out, eval_out))

    probe = Probe()
    strategy, benchmark = _built("psd", probe, clusters=2, teacher_mode=mode)
    assert strategy.plugins[0].teacher_mode == mode
    strategy.train(benchmark.train_stream[0])
    assert probe.seen
    for modes, used, train_out, eval_out in probe.seen:
        assert modes == {mode == "train"}
        assert torch.equal(used, train_out if mode == "train" else eval_out)
        assert not torch.allclose(train_out, eval_out)  # BatchNorm: batch vs running stats


def test_psd_and_asl_follow_the_official_defaults_and_switch_back():
    import methods
    for name in ("psd", "asl"):
        assert methods.resolve_hparams(name, {})["focal_grad"] == "detached"
        assert methods.resolve_hparams(name, {"focal_grad": "full"})["focal_grad"] == "full"
        with pytest.raises(methods.MethodError, match="accepted: detached, full"):
            methods.resolve_hparams(name, {"focal_grad": "none"})
    assert methods.resolve_hparams("psd", {})["teacher_mode"] == "train"
    with pytest.raises(methods.MethodError, match="accepted: train, eval"):
        methods.resolve_hparams("psd", {"teacher_mode": "frozen"})
    # the methods' criteria carry the option: the values agree, the gradients follow it
    z = torch.tensor([[0.3, 1.5, -0.2]], requires_grad=True)
    y, mask = torch.tensor([[1.0, 0.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool)
    for name in ("psd", "asl"):
        grads = {}
        for focal_grad in ("detached", "full"):
            criterion = _built(name, focal_grad=focal_grad)[0]._criterion
            loss = criterion(z, y, mask)
            grads[focal_grad], = torch.autograd.grad(loss, z)
            want = asymmetric_loss(z, y, mask, focal_grad=focal_grad)
            assert torch.equal(loss, want)
            assert torch.equal(grads[focal_grad], torch.autograd.grad(want, z)[0])
        assert grads["detached"][0, 1] < grads["full"][0, 1]  # less push on the negative


def _built(name, *plugins, **overrides):
    """Method ``name`` built on a one-session digits stream (smallcnn, 1 epoch, no memory)
    with ``plugins`` after its own; returns the strategy and the benchmark."""
    import methods
    from benchmarks import models
    benchmark, info = streams.build("digits:B10?train=100&test=50")
    train = dict(epochs=1, optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=50,
                 eval_batch_size=50, milestones=[], num_workers=0, memory=0,
                 memory_mode="per_class", selection="random", amp="off",
                 channels_last=False, reset_optimizer=True, memory_labels="own",
                 replay_batch="concat")
    torch.manual_seed(0)
    ctx = methods.MethodContext(models.build("smallcnn", 10, 1), info,
                                methods.resolve_hparams(name, overrides), train, benchmark,
                                torch.device("cpu"), list(plugins))
    return methods.get(name).build(ctx), benchmark
