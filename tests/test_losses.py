"""Losses against values worked by hand."""
import math

import torch

from strategies.distillation import kd_loss, sigmoid_distillation
from strategies.losses import masked_bce, seen_cross_entropy


def bce(z, y):
    p = 1 / (1 + math.exp(-z))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_masked_bce_averages_over_labelled_entries_only():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 5.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, False], [False, False, True]])
    expected = (bce(0.0, 1) + bce(2.0, 0) + bce(3.0, 1)) / 3  # = (.6931 + 2.1269 + .0486)/3
    assert math.isclose(masked_bce(logits, targets, mask).item(), expected, rel_tol=1e-6)
    # changing an unlabelled entry changes nothing
    logits[0, 2] = 100.0
    assert math.isclose(masked_bce(logits, targets, mask).item(), expected, rel_tol=1e-6)


def test_seen_cross_entropy_is_softmax_ce():
    logits = torch.tensor([[1.0, 0.0]])
    expected = -math.log(math.e / (math.e + 1))  # 0.3133
    value = seen_cross_entropy(logits, torch.tensor([0]), torch.ones(1, 2, dtype=torch.bool))
    assert math.isclose(value.item(), expected, rel_tol=1e-6)


def test_kd_loss_is_t2_times_kl_of_softened_outputs():
    z, z_prev, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), 2.0
    q1 = math.e / (math.e + 1)  # softmax([1, 0]) of the teacher at T = 2
    q = [q1, 1 - q1]
    kl = sum(qi * math.log(qi / 0.5) for qi in q)  # student is uniform
    assert math.isclose(kd_loss(z, z_prev, t).item(), t * t * kl, rel_tol=1e-6)
    assert kd_loss(z_prev, z_prev, t).abs().item() < 1e-7


def test_sigmoid_distillation_targets_the_previous_probabilities():
    z, z_prev = torch.tensor([[0.0]]), torch.tensor([[math.log(3.0)]])  # teacher p = 0.75
    expected = -(0.75 * math.log(0.5) + 0.25 * math.log(0.5))  # = log 2
    assert math.isclose(sigmoid_distillation(z, z_prev).item(), expected, rel_tol=1e-6)
