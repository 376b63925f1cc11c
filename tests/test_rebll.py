"""RebLL (reconstruction): AKD's two parts against hand values, the decay weight, OR's
label blocks on a hand-built batch and memory, and a full run with memory-label rates."""
import math
import types

import pytest
import torch

from benchmarks import models, streams
from benchmarks.cell import resolve_train
from benchmarks.streams.base import LabelledSet, TensorPool
from methods import MethodContext, resolve_hparams
from methods.rebll import build
from strategies.losses import supervised_mask
from strategies.memory import LabelMemory
from strategies.rebll import (AKDPlugin, RelabelPlugin, akd_distillation, column_sessions,
                              decay_weight, relabel)

STREAM = "digits:B0-C2?train=200&test=100"
LN3 = math.log(3)


def rebll(**overrides):
    """The rebll strategy for ``overrides`` on a tiny stream (nothing trained)."""
    benchmark, info = streams.build(STREAM)
    model = models.build("smallcnn", info.num_classes, in_channels=1)
    train = resolve_train(info.recipe, dict(device="cpu", eval_batch_size=64))
    return build(MethodContext(model, info, resolve_hparams("rebll", overrides), train,
                               benchmark, torch.device("cpu")))


# p = sigmoid(z): z = ln 3 -> 0.75, z = -ln 3 -> 0.25. Entries: a positive at p = .75, a
# negative at p = .75, a negative at p = .25, and an unsupervised entry (ignored).
LOGITS = torch.tensor([[LN3, LN3, -LN3, 5.0]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
MASK = torch.tensor([[True, True, True, False]])


@pytest.mark.parametrize("overrides, expected", [
    # plain ASL (gamma_neg 4, gamma_pos 0, clip .05): -log .75 = .287682;
    # p_m = .70: .7^4 * -log .3 = .2401 * 1.203973 = .289074;
    # p_m = .20: .2^4 * -log .8 = .0016 * .223144 = .000357; mean (.577113) / 3
    (dict(gamma_neg=4.0, gamma_pos=0.0, clip=0.05, neg_weight=1.0), 0.192371),
    # negatives emphasised (gamma_pos 1, gamma_neg 0, clip 0, w_neg 2):
    # .25 * .287682 = .071921; 2 * -log .25 = 2.772589; 2 * -log .75 = .575364; / 3
    (dict(gamma_neg=0.0, gamma_pos=1.0, clip=0.0, neg_weight=2.0), 1.139958),
    # akd off: plain BCE whatever the gammas: (.287682 + 1.386294 + .287682) / 3
    (dict(gamma_neg=4.0, gamma_pos=1.0, clip=0.05, neg_weight=2.0, akd=False), 0.653886),
])
def test_classification_part_matches_hand_values(overrides, expected):
    strategy = rebll(**overrides)
    assert strategy._criterion(LOGITS, TARGETS, MASK).item() == pytest.approx(expected, abs=1e-5)


def test_distillation_part_matches_hand_values():
    # teacher q = .5, .75, .25, .9 (logits 0, ln 3, -ln 3, ln 9): |2q - 1| = 0, .5, .5, .8.
    # A student at logit 0 (p = .5) has BCE(p, q) = ln 2 = .693147 for every q.
    prev = torch.tensor([[0.0, LN3, -LN3, math.log(9)]])
    student = torch.zeros(1, 4)
    # fixed lambda 2: w = 1, e^-1, e^-1, e^-1.6 = 1, .367879, .367879, .201897 (mean .484414)
    assert akd_distillation(student, prev, 2.0).item() == pytest.approx(0.335770, abs=1e-5)
    # adaptive: lambda = 2 * mean|2q - 1| = 2 * .45 = .9: w = 1, e^-.45, e^-.45, e^-.72
    # = 1, .637628, .637628, .486752 (mean .690502) -> * ln 2
    assert akd_distillation(student, prev, 2.0, adaptive=True).item() == pytest.approx(
        0.478625, abs=1e-5)
    # student p = .75, teacher q = .25: BCE = .25 * .287682 + .75 * 1.386294 = 1.111642;
    # lambda 1: w = e^-.5 = .606531 -> .674243
    one = akd_distillation(torch.tensor([[LN3]]), torch.tensor([[-LN3]]), 1.0)
    assert one.item() == pytest.approx(0.674243, abs=1e-5)


def test_akd_plugin_adds_mu_times_the_distillation_on_old_classes_only():
    student, prev = torch.tensor([[LN3, 3.0]]), torch.tensor([[-LN3, -3.0]])
    state = types.SimpleNamespace(mb_output=student, prev_output=prev, n_old=1,
                                  loss=torch.tensor(1.0))
    AKDPlugin(mu=2.0, lam=1.0, adaptive=False).before_backward(state)
    assert state.loss.item() == pytest.approx(1.0 + 2 * 0.674243, abs=1e-5)  # class 0 only


@pytest.mark.parametrize("form, expected", [
    # q = .1, .25, .5, .75, .9; lambda 2
    ("symmetric", [math.exp(-1.6), math.exp(-1.0), 1.0, math.exp(-1.0), math.exp(-1.6)]),
    ("negative", [math.exp(-0.2), math.exp(-0.5), math.exp(-1.0), math.exp(-1.5),
                  math.exp(-1.8)]),   # exp(-2 q): teacher negatives keep the most weight
    ("positive", [math.exp(-1.8), math.exp(-1.5), math.exp(-1.0), math.exp(-0.5),
                  math.exp(-0.2)]),   # exp(-2 (1 - q))
])
def test_decay_weight_forms_by_hand(form, expected):
    q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    assert torch.allclose(decay_weight(q, 2.0, form), torch.tensor(expected), atol=1e-6)
    with pytest.raises(ValueError, match="unknown kd_weight"):
        decay_weight(q, 2.0, "both")


def test_asymmetric_distillation_forms_match_hand_values():
    # teacher q = .25 and .75 (logits -ln 3, ln 3), student at logit 0: BCE = ln 2 each.
    prev, student = torch.tensor([[-LN3, LN3]]), torch.zeros(1, 2)
    ln2 = math.log(2)
    # negative, lambda 1: w = e^-.25, e^-.75 = .778801, .472367; mean .625584 -> * ln 2
    got = akd_distillation(student, prev, 1.0, form="negative")
    assert got.item() == pytest.approx(0.625584 * ln2, abs=1e-5)
    # positive is the mirror image: same weights swapped, same mean here
    assert akd_distillation(student, prev, 1.0, form="positive").item() == pytest.approx(
        got.item(), abs=1e-6)
    # student p = .75, teacher q = .25 (one entry):
    # BCE = .25 * .287682 + .75 * 1.386294 = 1.111642; negative: w = e^-.25 -> .865744,
    # positive: w = e^-.75 -> .525102 (symmetric: e^-.5 -> .674243)
    one = (torch.tensor([[LN3]]), torch.tensor([[-LN3]]), 1.0)
    assert akd_distillation(*one, form="negative").item() == pytest.approx(0.865744, abs=1e-5)
    assert akd_distillation(*one, form="positive").item() == pytest.approx(0.525102, abs=1e-5)
    # adaptive: lambda times the batch's mean confidence; negative: mean q = .5 on the pair
    # -> w = e^-.125, e^-.375 = .882497, .687289, mean .784893
    assert akd_distillation(student, prev, 1.0, adaptive=True, form="negative").item() == \
        pytest.approx(0.784893 * ln2, abs=1e-5)
    # the plugin passes its form on
    state = types.SimpleNamespace(mb_output=one[0], prev_output=one[1], n_old=1,
                                  loss=torch.tensor(0.0))
    AKDPlugin(mu=1.0, lam=1.0, adaptive=False, form="negative").before_backward(state)
    assert state.loss.item() == pytest.approx(0.865744, abs=1e-5)


def test_rebll_accepts_the_kd_weight_forms_and_labelled_negatives():
    strategy = rebll(kd_weight="negative", negatives="labelled", clip=0.0)
    akd = next(p for p in strategy.plugins if isinstance(p, AKDPlugin))
    assert akd.form == "negative" and strategy.negatives == "labelled"
    assert resolve_hparams("rebll", {})["kd_weight"] == "symmetric"  # the default stays
    with pytest.raises(ValueError, match="accepted: symmetric, negative, positive"):
        resolve_hparams("rebll", {"kd_weight": "both"})
    # under labelled negatives, the entries OR fills are the memory rows' only negatives of
    # other sessions' classes: the loss supervises exactly the labelled and filled entries
    targets, mask = online("memory")
    assert torch.equal(supervised_mask(mask, "labelled", 4), mask)
    assert not supervised_mask(M, "labelled", 4)[0, 2:].any()  # unknown before OR
    assert mask[0].all() and targets[0, 3] == 0  # after OR: a negative, supervised


def test_decay_weight_falls_as_teacher_confidence_rises():
    rising = torch.tensor([0.5, 0.6, 0.8, 0.95, 1.0])
    for q in (rising, 1 - rising):  # confident positives and confident negatives alike
        w = decay_weight(q, 2.0)
        assert w[0] == 1 and (w[1:] < w[:-1]).all()
    assert torch.equal(decay_weight(rising, 0.0), torch.ones(5))


# Three sessions of two classes; current session 2. Rows: a memory row of session 0, one of
# session 1, a current row, and a memory row of session 0 also kept for session 2's block.
SESSIONS = [[0, 1], [2, 3], [4, 5]]
Y = torch.tensor([[1., 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 1],
                  [0, 1, 0, 0, 0, 1]])
M = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1],
                  [1, 1, 0, 0, 1, 1]]).bool()
S = torch.tensor([0, 1, 2, 0])
# current model: .9 on even columns, .3 on odd; previous model the other way round
CURRENT = torch.tensor([0.9, 0.3] * 3).expand(4, 6)
PREVIOUS = torch.tensor([0.2, 0.7] * 3).expand(4, 6)
HARD_MEMORY = [[1, 0, 1, 0, 1, 0],  # blocks 1, 2 above the diagonal: current model
               [0, 1, 0, 1, 1, 0],  # block 0 below: previous; block 2 above: current
               [0, 0, 0, 0, 1, 1],  # current row: untouched with or_scope=memory
               [0, 1, 1, 0, 0, 1]]  # only the missing block 1, from the current model


def logit(p):
    return torch.log(p / (1 - p))


def batch_state(n_seen=6, session=2):
    return types.SimpleNamespace(
        mbatch=[None, Y.clone(), M.clone(), S], mb_y=Y.clone(), mb_mask=M.clone(), mb_session=S,
        mb_output=logit(CURRENT).requires_grad_(), prev_output=logit(PREVIOUS),
        session=session, n_seen=n_seen)


def online(scope, labels="hard", **state):
    plugin = RelabelPlugin("online", scope, labels == "soft", 0.5)
    plugin.col_session = column_sessions(SESSIONS)
    strategy = batch_state(**state)
    plugin.after_forward(strategy)
    return strategy.mbatch[1], strategy.mbatch[2]


def test_online_relabeling_fills_the_missing_blocks_of_memory_rows():
    targets, mask = online("memory")
    assert targets.tolist() == HARD_MEMORY
    assert mask.tolist() == [[True] * 6, [True] * 6, M[2].tolist(), [True] * 6]


def test_online_relabeling_of_all_rows_fills_the_current_rows_old_blocks_too():
    targets, mask = online("all")
    assert targets[2].tolist() == [0, 1, 0, 1, 1, 1] and mask.all()
    assert targets[[0, 1, 3]].tolist() == [HARD_MEMORY[i] for i in (0, 1, 3)]


def test_soft_relabeling_copies_the_probabilities():
    targets, _ = online("memory", "soft")
    expected = torch.tensor([[1, 0, .9, .3, .9, .3], [.2, .7, 0, 1, .9, .3],
                             [0, 0, 0, 0, 1, 1], [0, 1, .9, .3, 0, 1]])
    assert torch.allclose(targets, expected, atol=1e-6)


def test_relabeling_leaves_unseen_classes_and_missing_teachers_alone():
    # in session 1 (4 classes seen) columns 4, 5 stay unlabelled
    targets, mask = online("memory", n_seen=4, session=1)
    assert targets[0].tolist() == [1, 0, 1, 0, 0, 0] and mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    # without a previous model, blocks below the diagonal are not filled
    filled, mask = relabel(Y, M, S, S < 2, CURRENT, None, column_sessions(SESSIONS), 6,
                           False, 0.5)
    assert filled[1].tolist() == [0, 0, 0, 1, 1, 0] and mask[1].tolist() == [0, 0, 1, 1, 1, 1]


class Lookup(torch.nn.Module):
    """Logits looked up by the image: each pool image holds its own row number."""

    def __init__(self, probs):
        super().__init__()
        self.logits = logit(probs)

    def forward(self, x):
        return self.logits[x.flatten(1)[:, 0].long()]


def test_end_of_session_relabels_the_stored_memory_and_every_class_list():
    pool = TensorPool(torch.arange(4.0).view(4, 1, 1, 1))
    buffer = LabelledSet(pool, torch.arange(4), Y, M, S)
    memory = LabelMemory(10)
    memory.buffer = buffer
    memory.per_class = {0: buffer.subset([0, 3]), 3: buffer.subset([1])}
    strategy = types.SimpleNamespace(
        model=Lookup(CURRENT), prev_model=Lookup(PREVIOUS), eval_mb_size=3,
        device=torch.device("cpu"), amp_dtype=None, n_seen=6, session=2,
        info=types.SimpleNamespace(sessions=SESSIONS))
    plugin = RelabelPlugin("end_of_session", "memory", False, 0.5, memory)
    plugin.before_training_exp(strategy)
    plugin.after_training_exp(strategy)
    # every stored row is relabeled, the session's own rows (row 2) included
    assert memory.buffer.targets.tolist() == [*HARD_MEMORY[:2], [0, 1, 0, 1, 1, 1],
                                              HARD_MEMORY[3]]
    assert memory.buffer.mask.all()
    assert memory.per_class[0].targets.tolist() == [HARD_MEMORY[0], HARD_MEMORY[3]]
    assert memory.per_class[3].targets.tolist() == [HARD_MEMORY[1]]


@pytest.mark.parametrize("hparams", [{}, {"negatives": "labelled", "clip": 0.0,
                                          "kd_weight": "negative"}])
def test_rebll_finishes_every_session_and_records_memory_label_rates(cell, hparams):
    record = cell("rebll", hparams=hparams)
    assert [s["session"] for s in record["sessions"]] == [0, 1, 2, 3, 4]
    assert record["sessions"][0]["memory_labels"] is None  # no memory trained on yet
    for session in record["sessions"][1:]:
        rates = session["memory_labels"]
        assert rates["rows"] > 0 and 0 <= rates["FPR"] <= 100 and 0 <= rates["FNR"] <= 100
    last = record["sessions"][-1]["memory_labels"]
    assert record["summary"]["last_mem_FPR"] == last["FPR"]
    assert record["summary"]["last_mem_FNR"] == last["FNR"]
