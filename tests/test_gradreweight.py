"""Gradient reweighting with distribution-aware KD: DAKD and the logit-adjusted losses against
hand values, the classifier gradient after the plugin against a step-by-step computation of
alpha, r_old, r_new and beta, raw logits at test, and the method finishing its sessions."""
import math
from types import SimpleNamespace

import pytest
import torch
from avalanche.core import SupervisedPlugin

import tiny
from strategies.gradreweight import GradientReweighting, dakd, row_weights

LN3 = math.log(3.0)


def test_dakd_with_uniform_removal_is_temperature_kd():
    # removed = [5, 5]: the entropy of [5.001, 5.001] is maximal, H = 1 exactly (the official
    # measure_imbalance adds 0.001 to the counts, not to H), so L = -mean_b sum_c q log p, T = 2.
    # row 1: z/T = [0, ln 3] -> p = [1/4, 3/4]; z_T = [0, 0] -> q = [1/2, 1/2]
    #        -> -(1/2 ln 1/4 + 1/2 ln 3/4) = 1/2 ln(16/3)
    # row 2: z = [0, 0] -> p = [1/2, 1/2]; q = softmax([0, ln 3]) = [1/4, 3/4] -> ln 2
    student = torch.tensor([[0.0, 2 * LN3], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0], [0.0, 2 * LN3]])
    value = dakd(student, teacher, torch.tensor([5.0, 5.0]), 2.0)
    assert value.item() == pytest.approx((0.5 * math.log(16 / 3) + math.log(2)) / 2, rel=1e-6)


def test_dakd_with_skewed_removal_mixes_student_and_teacher_logits():
    # removed = [3, 1]: H = entropy of [3.001, 1.001] / ln 2
    p = [3.001 / 4.002, 1.001 / 4.002]
    h = -(p[0] * math.log(p[0]) + p[1] * math.log(p[1])) / math.log(2)  # 0.8115
    # pi' = [3, 1] / 4, L2-normalised = [3, 1] / sqrt(10)
    # z = [0, 2 ln 3], z_T = [0, 0]: z_mix = z pi' + z_T (1 - pi') = [0, 2 ln 3 / sqrt 10]
    # log_softmax(z_mix / 2) = [0, m] - ln(1 + e^m), m = ln 3 / sqrt 10; q = [1/2, 1/2]
    m = LN3 / math.sqrt(10)
    mixed = -(0.5 * (0 - math.log(1 + math.exp(m))) + 0.5 * (m - math.log(1 + math.exp(m))))
    plain = 0.5 * math.log(16 / 3)  # as in the uniform test, row 1
    expected = h * plain + (1 - h) * mixed
    value = dakd(torch.tensor([[0.0, 2 * LN3]]), torch.zeros(1, 2), torch.tensor([3.0, 1.0]), 2.0)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert value.item() != pytest.approx(plain, rel=1e-3)


def test_dakd_with_nothing_removed_falls_back_to_plain_kd():
    student, teacher = torch.tensor([[0.0, 2 * LN3]]), torch.zeros(1, 2)
    value = dakd(student, teacher, torch.zeros(2), 2.0)
    assert value.item() == pytest.approx(0.5 * math.log(16 / 3), rel=1e-6)


def test_multi_label_dakd_sums_binary_distributions():
    # uniform removal (H = 1), T = 2, z = [2 ln 3, 0], z_T = [2 ln 3, 0]:
    # class 0: q = sigmoid(ln 3) = 3/4, log sigmoid(+-ln 3) = ln 3/4, ln 1/4
    #          -> -(3/4 ln 3/4 + 1/4 ln 1/4); class 1: q = 1/2, both ln 1/2 -> ln 2
    z = torch.tensor([[2 * LN3, 0.0]])
    value = dakd(z, z.clone(), torch.ones(2), 2.0, label_mode="multi")
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) + math.log(2)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def _strategy(counts, n_old, n_seen, negatives=None, label_mode="single"):
    return SimpleNamespace(class_counts=torch.tensor(counts), class_negatives=negatives,
                           n_old=n_old, n_seen=n_seen, info=SimpleNamespace(label_mode=label_mode))


def test_logit_adjusted_losses_by_hand():
    # single-label: counts [3, 1] -> z + log pi = [ln 3/4, ln 1/4] for z = 0;
    # CE to class 1 = -ln(1/4 / (3/4 + 1/4)) = ln 4
    method = GradientReweighting("single")
    method.before_training_exp(_strategy([3.0, 1.0, 0.0], 0, 2))
    value = method(torch.zeros(1, 2), torch.tensor([1]), torch.ones(1, 2, dtype=torch.bool))
    assert value.item() == pytest.approx(math.log(4), rel=1e-6)
    # multi-label: n+ = [1, 3], n- = [3, 1] -> shifts [ln 1/3, ln 3] on z = 0; targets [1, 0]:
    # -ln sigmoid(-ln 3) = ln 4 and -ln(1 - sigmoid(ln 3)) = ln 4: mean ln 4
    method = GradientReweighting("multi")
    method.before_training_exp(_strategy([1.0, 3.0], 0, 2, torch.tensor([3.0, 1.0]), "multi"))
    value = method(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool))
    assert value.item() == pytest.approx(math.log(4), rel=1e-6)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh())
        self.head = torch.nn.Linear(5, 4)

    def forward(self, x):
        return self.head(self.backbone(x))


def _plain_grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)


def _step(method, strategy, model, x, y, teacher):
    """One template iteration through the plugin's hooks; returns what a hand computation
    needs: the classification and (weighted) KD gradients of the head and the plain
    gradients of every parameter."""
    n, n_old = strategy.n_seen, strategy.n_old
    strategy.model = model
    method.before_forward(strategy)
    strategy.mb_output = model(x)
    method.after_forward(strategy)
    strategy.prev_output = None if teacher is None else teacher(x)
    strategy.loss = method(strategy.mb_output[:, :n], y, None)
    head = [model.head.weight, model.head.bias]
    ce = torch.autograd.grad(strategy.loss, head, retain_graph=True)
    kd = [torch.zeros_like(g) for g in ce]
    total = strategy.loss
    if n_old:
        kd_loss = method.kd_scale * dakd(strategy.mb_output[:, :n_old],
                                         strategy.prev_output[:, :n_old], method.removed, 2.0)
        kd = torch.autograd.grad(kd_loss, head, retain_graph=True)
        total = total + kd_loss
    plain = _plain_grads(model, total)
    model.zero_grad()
    method.before_backward(strategy)
    strategy.loss.backward()
    method.after_backward(strategy)
    return ce, kd, plain


def _norm(v):
    return math.sqrt(sum(e * e for e in v))


def test_classifier_gradient_is_reweighted_as_computed_by_hand():
    torch.manual_seed(0)
    model, method = TinyNet(), GradientReweighting("single")
    x = torch.randn(6, 3)

    # first session: classes 0-1, counts [10, 4]; two steps so that Phi accumulates
    strategy = _strategy([10.0, 4.0, 0.0, 0.0], 0, 2)
    method.before_training_exp(strategy)
    phi = [0.0, 0.0]
    for y in (torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([0, 1, 1, 1, 1, 1])):
        ce, _, plain = _step(method, strategy, model, x, y, None)
        phi = [phi[c] + ce[0][c].norm().item() for c in range(2)]
        alpha = [min(phi) / phi[c] for c in range(2)]
        for c in range(2):
            assert torch.allclose(model.head.weight.grad[c], alpha[c] * ce[0][c], atol=1e-6)
            assert torch.allclose(model.head.bias.grad[c], alpha[c] * ce[1][c], atol=1e-6)
        for got, want in zip(list(model.backbone.parameters()), plain[:2]):
            assert torch.equal(got.grad, want)
    assert alpha[0] < 1 or alpha[1] < 1

    # second session: classes 2-3 arrive; memory keeps 3 of class 0 and 3 of class 1
    teacher = TinyNet().requires_grad_(False)
    teacher.load_state_dict(model.state_dict())
    strategy = _strategy([3.0, 3.0, 6.0, 2.0], 2, 4)
    method.before_training_exp(strategy)
    assert method.removed.tolist() == [7.0, 1.0]  # original 10, 4 minus memory 3, 3
    n_old_total, n_new_total = 14.0, 8.0
    gamma = math.exp(-n_old_total / (n_old_total + n_new_total))
    assert method.kd_scale.item() == pytest.approx(0.7 * 4 * math.sqrt(14 / 8), rel=1e-6)
    phi = [0.0] * 4
    for y in (torch.tensor([0, 1, 2, 2, 2, 3]), torch.tensor([2, 3, 3, 2, 2, 0])):
        with torch.no_grad():  # the model moves between steps, as training would
            model.head.weight.add_(0.1 * torch.randn(4, 5))
        ce, kd, plain = _step(method, strategy, model, x, y, teacher)
        ce_norms = [ce[0][c].norm().item() for c in range(4)]
        kd_norms = [kd[0][c].norm().item() for c in range(2)]
        phi = [phi[c] + ce_norms[c] for c in range(4)]
        ratio = (sum(phi[2:]) / 2) / (sum(phi[:2]) / 2)
        r_old, r_new = min(1.0, ratio), min(1.0, ratio * gamma)
        alpha = [min(phi[:2]) / phi[c] * r_old for c in (0, 1)]
        alpha += [min(phi[2:]) / phi[c] * r_new for c in (2, 3)]
        beta = _norm([alpha[c] * ce_norms[c] for c in range(4)]) / _norm(kd_norms)
        for c in range(4):
            kd_part = beta * kd[0][c] if c < 2 else 0
            want = alpha[c] * ce[0][c] + kd_part
            assert torch.allclose(model.head.weight.grad[c], want, atol=1e-5)
            want_b = alpha[c] * ce[1][c] + (beta * kd[1][c] if c < 2 else 0)
            assert torch.allclose(model.head.bias.grad[c], want_b, atol=1e-5)
        for got, want in zip(list(model.backbone.parameters()), plain[:2]):
            assert torch.allclose(got.grad, want, atol=1e-7)
    assert r_old < 1 or r_new < 1


def test_ablation_switches_turn_off_their_part():
    torch.manual_seed(0)
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 3, 3])
    counts = [3.0, 3.0, 6.0, 2.0]
    # adjust=False: the loss is plain CE (no prior shift)
    method = GradientReweighting("single", adjust=False)
    method.before_training_exp(_strategy(counts, 0, 4))
    logits = torch.randn(6, 4)
    assert method(logits, y, None).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    # kd="plain": DAKD sees nothing removed, i.e. H = 1
    method = GradientReweighting("single", kd="plain")
    method.original = torch.tensor([10.0, 4.0, 0.0, 0.0])
    method.before_training_exp(_strategy(counts, 2, 4))
    assert method.removed.tolist() == [0.0, 0.0]
    # reweight=False: every parameter, the head included, gets the plain gradient
    model, teacher = TinyNet(), TinyNet().requires_grad_(False)
    method = GradientReweighting("single", reweight=False)
    method.original = torch.tensor([10.0, 4.0, 0.0, 0.0])
    strategy = _strategy(counts, 2, 4)
    method.before_training_exp(strategy)
    _, _, plain = _step(method, strategy, model, x, y, teacher)
    for got, want in zip(model.parameters(), plain):
        assert torch.allclose(got.grad, want, atol=1e-7)


def test_predictions_use_the_raw_logits():
    seen = []

    class Probe(SupervisedPlugin):
        def after_eval_iteration(self, strategy, **kwargs):
            seen.append((strategy.mb_output.clone(), strategy.model(strategy.mb_x)))

    strategy, benchmark, _ = tiny.strategy("gradreweight",
                                           "digits-lt:B0-C2?n_max=60&test_per_class=10",
                                           plugins=[Probe()])
    strategy.train(benchmark.train_stream[0])
    assert strategy._criterion.prior[0] != strategy._criterion.prior[1]  # a real shift
    strategy.eval([benchmark.test_stream[0]])
    assert seen and all(torch.equal(out, raw) for out, raw in seen)


@pytest.mark.parametrize("stream", ["digits:B0-C2?train=300&test=150",
                                    "digits-lt:B0-C2?n_max=60&test_per_class=20"])
def test_gradreweight_finishes_every_session(cell, stream):
    record = cell("gradreweight", stream=stream, epochs=2)
    assert [s["n_seen"] for s in record["sessions"]] == [2, 4, 6, 8, 10]
    assert all(math.isfinite(loss) for s in record["sessions"] for loss in s["train_loss"])


def test_kd_rows_under_bf16_autocast_match_a_float32_computation():
    # Under amp the head's backward runs in bf16; reading g_kd as "full minus g_ce" there
    # cancels. The plugin takes g_ce and g_kd on the float32 logits and forms the rows in
    # float32 from the head's input: they must equal a float64 computation on the same
    # features and logits, while the old reading is far off when the KD part is small.
    torch.manual_seed(0)
    model, teacher = TinyNet(), TinyNet().requires_grad_(False)
    x, y = torch.randn(16, 3), torch.tensor([0, 1, 2, 3] * 4)
    method = GradientReweighting("single", kd_weight=1e-3)
    method.original = torch.tensor([10.0, 4.0, 0.0, 0.0])
    strategy = _strategy([3.0, 3.0, 6.0, 2.0], 2, 4)
    strategy.model = model
    method.before_training_exp(strategy)
    features = []
    model.head.register_forward_hook(lambda m, args, out: features.append(args[0]))
    method.before_forward(strategy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x).float()
        strategy.prev_output = teacher(x).float()
    method.after_forward(strategy)
    assert features[0].dtype == torch.bfloat16
    strategy.mb_output = logits
    strategy.loss = method(logits[:, :4], y, None)
    kd_loss = method.kd_scale * dakd(logits[:, :2], strategy.prev_output[:, :2],
                                     method.removed, 2.0)
    f = features[0].double()
    g_ce = torch.autograd.grad(strategy.loss, logits, retain_graph=True)[0].double()[:, :4]
    g_kd = torch.autograd.grad(kd_loss, logits, retain_graph=True)[0].double()[:, :2]
    ce_w, kd_w = g_ce.T @ f, g_kd.T @ f  # float64 references
    ce_b, kd_b = g_ce.sum(0), g_kd.sum(0)
    head = [model.head.weight, model.head.bias]
    ce_bf16 = torch.autograd.grad(strategy.loss, head, retain_graph=True)[0]
    ce_norms = ce_w.norm(dim=1)
    alpha = row_weights(ce_norms, 2, method.attenuation.double())
    beta = (alpha * ce_norms).norm() / kd_w.norm(dim=1).norm()
    want_w, want_b = alpha[:, None] * ce_w, alpha * ce_b
    want_w[:2] += beta * kd_w
    want_b[:2] += beta * kd_b

    method.before_backward(strategy)
    strategy.loss.backward()
    full = model.head.weight.grad.clone()
    method.after_backward(strategy)
    assert torch.allclose(model.head.weight.grad.double(), want_w, rtol=1e-5, atol=1e-7)
    assert torch.allclose(model.head.bias.grad.double(), want_b, rtol=1e-5, atol=1e-7)
    # the old reading of g_kd, from the bf16 backward, is off by far more than bf16 rounding
    old_kd = (full[:2] - ce_bf16[:2]).double()
    assert ((old_kd - kd_w).norm() / kd_w.norm()).item() > 0.05
