"""Losses against values worked by hand."""
import math

import pytest
import torch

from strategies.distillation import kd_loss, sigmoid_distillation
from strategies.balanced import log_prior, logit_adjusted_loss
from strategies.losses import asymmetric_loss, masked_bce, seen_cross_entropy, supervised_mask


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


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def test_asymmetric_loss_matches_a_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True]])
    gp, gn, clip, w = 1.0, 4.0, 0.05, 2.0
    p = [sigmoid(z) for z in (2.0, -1.0, 0.5)]
    pos = (1 - p[0]) ** gp * math.log(p[0])
    negs = [max(q - clip, 0) ** gn * math.log(1 - max(q - clip, 0)) for q in p[1:]]
    expected = -(pos + w * sum(negs)) / 3  # p = .881, .269, .622: 0.0050 + ...
    value = asymmetric_loss(logits, targets, mask, gamma_neg=gn, gamma_pos=gp, clip=clip,
                            neg_weight=w)
    assert math.isclose(value.item(), expected, rel_tol=1e-5)


def test_asymmetric_loss_with_no_focusing_and_no_clip_is_masked_bce():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=gen) * 3
    targets = (torch.rand(4, 5, generator=gen) > 0.5).float()
    mask = torch.rand(4, 5, generator=gen) > 0.3
    plain = asymmetric_loss(logits, targets, mask, gamma_neg=0, gamma_pos=0, clip=0)
    assert torch.allclose(plain, masked_bce(logits, targets, mask), atol=1e-6)


def test_asymmetric_loss_drops_easy_negatives_below_the_clip():
    logits = torch.tensor([[math.log(0.04 / 0.96)]])  # p = 0.04 < clip
    zero = asymmetric_loss(logits, torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool))
    assert zero.item() == 0.0


def test_supervised_mask_follows_the_negatives_option():
    mask = torch.tensor([[True, True, False, False], [False, False, True, True]])
    assert torch.equal(supervised_mask(mask, "labelled", 2), mask)
    assert supervised_mask(mask, "seen", 2).all()
    assert supervised_mask(mask, "session", 2).tolist() == [[True, True, True, True],
                                                             [False, False, True, True]]


def test_logit_adjusted_losses_shift_by_log_counts():
    logits, counts = torch.tensor([[0.0, 1.0]]), torch.tensor([9.0, 1.0])
    shifted = [math.log(9.0), 1.0]  # z + log n
    expected = -(shifted[1] - math.log(math.exp(shifted[0]) + math.exp(shifted[1])))
    value = logit_adjusted_loss(logits, torch.tensor([1]), None, log_prior(counts), "single")
    assert math.isclose(value.item(), expected, rel_tol=1e-6)
    uniform = logit_adjusted_loss(logits, torch.tensor([1]), None, log_prior(torch.ones(2) * 5),
                                  "single")
    assert math.isclose(uniform.item(), seen_cross_entropy(logits, torch.tensor([1]), None).item(),
                        rel_tol=1e-6)


def test_balanced_sigmoid_shifts_by_log_odds_of_supervised_counts():
    logits, targets = torch.tensor([[0.0, 0.5]]), torch.tensor([[1.0, 0.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    prior = log_prior(torch.tensor([1.0, 0.0]), torch.tensor([4.0, 2.0]))  # 0 guarded to 1
    assert torch.allclose(prior, torch.tensor([math.log(1 / 4), math.log(1 / 2)]))
    expected = (bce(math.log(1 / 4), 1) + bce(0.5 + math.log(1 / 2), 0)) / 2
    value = logit_adjusted_loss(logits, targets, mask, prior, "multi")
    assert math.isclose(value.item(), expected, rel_tol=1e-6)


def official_asl(x, y, gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8,
                 disable_torch_grad_focal_loss=True):
    """The forward of ``AsymmetricLoss`` in Alibaba-MIIL/ASL ``src/loss_functions/losses.py``
    (and Robbie-Xu/CPSD ``model/ASL_losses.py``), transcribed for parity."""
    x_sigmoid = torch.sigmoid(x)
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        if disable_torch_grad_focal_loss:
            torch.set_grad_enabled(False)
        pt0 = xs_pos * y
        pt1 = xs_neg * (1 - y)
        pt = pt0 + pt1
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        one_sided_w = torch.pow(1 - pt, one_sided_gamma)
        if disable_torch_grad_focal_loss:
            torch.set_grad_enabled(True)
        loss *= one_sided_w
    return -loss.sum()


@pytest.mark.parametrize("focal_grad, disable", [("detached", True), ("full", False)])
@pytest.mark.parametrize("gamma_pos", [0.0, 1.0])
def test_asymmetric_loss_gradient_matches_the_official_loss(focal_grad, disable, gamma_pos):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(6, 7, generator=gen) * 3).requires_grad_()
    targets = (torch.rand(6, 7, generator=gen) > 0.6).float()
    mask = torch.ones(6, 7, dtype=torch.bool)
    ours = asymmetric_loss(logits, targets, mask, gamma_neg=4.0, gamma_pos=gamma_pos,
                           clip=0.05, focal_grad=focal_grad)
    theirs = official_asl(logits, targets, gamma_pos=gamma_pos,
                          disable_torch_grad_focal_loss=disable) / logits.numel()  # sum -> mean
    assert torch.allclose(ours, theirs, rtol=1e-5)
    got, = torch.autograd.grad(ours, logits)
    want, = torch.autograd.grad(theirs, logits)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-8)


def test_detached_focusing_keeps_the_value_and_shrinks_the_negatives_gradient():
    # one negative, p = 0.6, clip 0.05: p_m = 0.55, L = -p_m^4 log(1 - p_m)
    # dL/dz = dp_m/dz * [p_m^4 / (1 - p_m) - 4 p_m^3 log(1 - p_m)]  (full),
    #         dp_m/dz * p_m^4 / (1 - p_m)                          (detached), dp_m/dz = p(1-p)
    z = torch.tensor([[math.log(0.6 / 0.4)]], requires_grad=True)
    y, mask = torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool)
    p, pm = 0.6, 0.55
    values, grads = {}, {}
    for mode in ("full", "detached"):
        loss = asymmetric_loss(z, y, mask, focal_grad=mode)
        values[mode], grads[mode] = loss.item(), torch.autograd.grad(loss, z)[0].item()
    assert values["full"] == pytest.approx(-pm ** 4 * math.log(1 - pm), rel=1e-5)
    assert values["detached"] == values["full"]
    assert grads["detached"] == pytest.approx(p * (1 - p) * pm ** 4 / (1 - pm), rel=1e-5)
    assert grads["full"] == pytest.approx(
        p * (1 - p) * (pm ** 4 / (1 - pm) - 4 * pm ** 3 * math.log(1 - pm)), rel=1e-5)
    with pytest.raises(ValueError, match="unknown focal_grad"):
        asymmetric_loss(z, y, mask, focal_grad="none")
