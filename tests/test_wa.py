"""WA: the alignment factor and the distillation against a transcription of PyCIL's
``models/wa.py`` / ``IncrementalNet.weight_align``, and a hand-checked alignment."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from strategies.distillation import ProportionalKD, soft_cross_entropy
from strategies.weight_aligning import WeightAligning, align_weights, alignment_factor


# --- transcribed from PyCIL (G-U-N/PyCIL utils/inc_net.py, models/wa.py) -------------------
def reference_weight_align(weights, increment):
    newnorm = torch.norm(weights[-increment:, :], p=2, dim=1)
    oldnorm = torch.norm(weights[:-increment, :], p=2, dim=1)
    meannew = torch.mean(newnorm)
    meanold = torch.mean(oldnorm)
    gamma = meanold / meannew
    weights[-increment:, :] *= gamma
    return gamma


def reference_KD_loss(pred, soft, T):
    pred = torch.log_softmax(pred / T, dim=1)
    soft = torch.softmax(soft / T, dim=1)
    return -1 * torch.mul(soft, pred).sum() / pred.shape[0]


def reference_loss(logits, targets, old_logits, known, total, T=2):
    kd_lambda = known / total
    loss_clf = F.cross_entropy(logits, targets)
    loss_kd = reference_KD_loss(logits[:, :known], old_logits, T)
    return (1 - kd_lambda) * loss_clf + kd_lambda * loss_kd
# ---------------------------------------------------------------------------------------------


def test_alignment_matches_pycil_weight_align():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 10)  # 7 seen classes: 4 old, 3 new; 3 unseen rows
    with torch.no_grad():
        head.weight[4:7] *= 3.0
    expected = head.weight[:7].detach().clone()
    gamma_ref = reference_weight_align(expected, 3)
    unseen = head.weight[7:].detach().clone()
    gamma = align_weights(head, 4, 7)
    assert gamma == pytest.approx(gamma_ref.item(), abs=1e-5)
    assert torch.allclose(head.weight[:7], expected, atol=1e-5)
    assert torch.equal(head.weight[7:], unseen)  # unseen classes untouched


def test_alignment_by_hand_equalises_the_mean_norms():
    weight = torch.zeros(4, 2)
    weight[0], weight[1] = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])  # old: 5, 1
    weight[2], weight[3] = torch.tensor([0.0, 6.0]), torch.tensor([8.0, 6.0])  # new: 6, 10
    assert alignment_factor(weight, 2, 4).item() == pytest.approx(3.0 / 8.0)
    head = torch.nn.Linear(2, 4)
    with torch.no_grad():
        head.weight.copy_(weight)
    bias = head.bias.detach().clone()
    align_weights(head, 2, 4)
    norms = head.weight.detach().norm(dim=1)
    assert norms[2:].mean().item() == pytest.approx(norms[:2].mean().item())  # both 3
    assert torch.equal(head.weight[:2], weight[:2]) and torch.equal(head.bias, bias)


def test_plugin_aligns_only_after_incremental_sessions():
    head = torch.nn.Linear(2, 4)
    before = head.weight.detach().clone()
    strategy = SimpleNamespace(n_old=0, n_seen=2, model=SimpleNamespace(head=head), notes={})
    WeightAligning().after_training_exp(strategy)
    assert torch.equal(head.weight, before) and strategy.notes == {}
    strategy.n_old, strategy.n_seen = 2, 4
    WeightAligning().after_training_exp(strategy)
    assert "wa_gamma" in strategy.notes
    norms = head.weight.detach().norm(dim=1)
    assert norms[2:].mean().item() == pytest.approx(norms[:2].mean().item(), rel=1e-6)


def test_weighted_distillation_matches_pycil_loss():
    torch.manual_seed(0)
    logits, old = torch.randn(8, 7, requires_grad=True), torch.randn(8, 4)
    targets = torch.randint(0, 7, (8,))
    strategy = SimpleNamespace(n_old=4, n_seen=7, mb_output=logits, prev_output=old,
                               info=SimpleNamespace(label_mode="single"),
                               loss=F.cross_entropy(logits, targets))
    ProportionalKD(2.0).before_backward(strategy)
    want = reference_loss(logits, targets, old, 4, 7)
    assert strategy.loss.item() == pytest.approx(want.item(), abs=1e-5)
    assert soft_cross_entropy(logits[:, :4], old, 2.0).item() == pytest.approx(
        reference_KD_loss(logits[:, :4], old, 2).item(), abs=1e-6)
    assert not math.isclose(strategy.loss.item(), F.cross_entropy(logits, targets).item())
