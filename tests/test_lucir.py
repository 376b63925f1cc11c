"""LUCIR: the three loss terms (cross-entropy on the scaled cosines, less-forget constraint,
margin ranking) against a transcription of the long-tailed CIL code's criterion
(xialeiliu/Long-Tailed-CIL src/approach/lucir.py), the terms by hand, and the cosine head in
training (old rows frozen, sigma learned, evaluation through the scaled cosines)."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tiny
from benchmarks import models
from strategies.losses import seen_cross_entropy
from strategies.lucir import (CosineHead, LUCIRPlugin, adaptive_lambda, less_forget_loss,
                              margin_ranking_loss)


# --- transcribed from xialeiliu/Long-Tailed-CIL src/approach/lucir.py ----------------------
class CosineLinear(nn.Module):
    def __init__(self, in_features, out_features, sigma=True):
        super(CosineLinear, self).__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.Tensor(out_features, in_features))
        if sigma:
            self.sigma = nn.Parameter(torch.Tensor(1))
        else:
            self.register_parameter('sigma', None)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1. / math.sqrt(self.weight.size(1))
        self.weight.data.uniform_(-stdv, stdv)
        if self.sigma is not None:
            self.sigma.data.fill_(1)  # for initializaiton of sigma

    def forward(self, input):
        out = F.linear(F.normalize(input, p=2, dim=1), F.normalize(self.weight, p=2, dim=1))
        if self.sigma is not None:
            out_s = self.sigma * out
        else:
            out_s = out
        if self.training:
            return {'wsigma': out_s, 'wosigma': out}
        else:
            return out_s


def reference_criterion(outputs, targets, ref_outputs, features, ref_features, lamda,
                        lamb_mr=1., dist=0.5, K=2):
    """``Appr.criterion`` for t > 0 with less_forget and margin_ranking on; returns the
    three terms (loss_dist, loss_ce, loss_mr) whose sum is the reference's loss. One change
    for current torch: MarginRankingLoss's target is viewed (-1, 1) like its inputs (the
    torch of the reference broadcast it; the value is the same)."""
    loss_dist = nn.CosineEmbeddingLoss()(features, ref_features.detach(),
                                         torch.ones(targets.shape[0])) * lamda
    loss_mr = torch.zeros(1)
    outputs_wos = torch.cat([o['wosigma'] for o in outputs], dim=1)
    num_old_classes = outputs_wos.shape[1] - outputs[-1]['wosigma'].shape[1]
    hard_index = targets < num_old_classes
    hard_num = hard_index.sum()
    if hard_num > 0:
        gt_scores = outputs_wos.gather(1, targets.unsqueeze(1))[hard_index]
        gt_scores = gt_scores.repeat(1, K)
        max_novel_scores = outputs_wos[hard_index, num_old_classes:].topk(K, dim=1)[0]
        assert (gt_scores.size() == max_novel_scores.size())
        assert (gt_scores.size(0) == hard_num)
        loss_mr = nn.MarginRankingLoss(margin=dist)(gt_scores.view(-1, 1),
                                                    max_novel_scores.view(-1, 1),
                                                    torch.ones(hard_num * K).view(-1, 1))
        loss_mr *= lamb_mr
    loss_ce = nn.CrossEntropyLoss()(torch.cat([o['wsigma'] for o in outputs], dim=1), targets)
    return loss_dist, loss_ce, loss_mr
# ---------------------------------------------------------------------------------------------


def _heads(d=6, n_old=5, n_new=3):
    """The reference's two heads (shared sigma) and the suite's one head with their rows."""
    torch.manual_seed(0)
    old, new = CosineLinear(d, n_old), CosineLinear(d, n_new)
    new.sigma = old.sigma
    with torch.no_grad():
        old.sigma.fill_(4.5)
    head = CosineHead(d, n_old + n_new + 2)  # two unseen classes
    with torch.no_grad():
        head.weight[:n_old + n_new] = torch.cat([old.weight, new.weight])
        head.sigma.fill_(4.5)
    return old, new, head


@pytest.mark.parametrize("k", [1, 2])
def test_three_terms_match_the_reference_criterion(k):
    old, new, head = _heads()
    n_old, n = 5, 8
    feats, ref_feats = torch.randn(12, 6), torch.randn(12, 6)
    targets = torch.tensor([0, 7, 3, 5, 6, 1, 2, 4, 5, 6, 7, 0])  # old and new samples
    lamda = adaptive_lambda(5.0, n_old, n - n_old)
    dist, ce, mr = reference_criterion([old(feats), new(feats)], targets, None, feats,
                                       ref_feats, lamda, lamb_mr=0.7, dist=0.4, K=k)
    logits = head(feats)[:, :n]
    assert seen_cross_entropy(logits, targets, None).item() == pytest.approx(ce.item(), abs=1e-5)
    assert (lamda * less_forget_loss(feats, ref_feats)).item() == pytest.approx(dist.item(),
                                                                               abs=1e-5)
    got = 0.7 * margin_ranking_loss(head.cosine(feats)[:, :n], targets, n_old, k, 0.4)
    assert got.item() == pytest.approx(mr.item(), abs=1e-5) and mr.item() > 0
    # eval mode: the reference's scaled output is the suite's logits
    old.eval(), new.eval()
    assert torch.allclose(torch.cat([old(feats), new(feats)], 1), logits, atol=1e-5)


def test_plugin_adds_the_reference_terms_to_the_loss():
    """The plugin on a model whose backbone is the identity: its loss is the reference's."""
    old, new, head = _heads()
    model = models.CILNet(nn.Identity(), 6, 10)
    model.head = head
    prev = models.CILNet(nn.Linear(6, 6), 6, 10)  # the previous model's features differ
    x = torch.randn(12, 6)
    targets = torch.tensor([0, 7, 3, 5, 6, 1, 2, 4, 5, 6, 7, 0])
    strategy = SimpleNamespace(model=model, prev_model=prev, n_old=5, n_seen=8, notes={},
                               mb_x=x, mb_y=targets, device=torch.device("cpu"),
                               amp_dtype=None)
    plugin = LUCIRPlugin(lamb=5.0, lamb_mr=1.0, margin=0.5, k=2)
    plugin.before_training_exp(strategy)
    strategy.loss = seen_cross_entropy(model(x)[:, :8], targets, None)
    plugin.before_backward(strategy)
    with torch.no_grad():
        ref_feats = prev.features(x)
    want = sum(reference_criterion([old(x), new(x)], targets, None, x, ref_feats,
                                   adaptive_lambda(5.0, 5, 3)))
    assert strategy.loss.item() == pytest.approx(want.item(), abs=1e-5)
    assert strategy.notes["lucir_lambda"] == pytest.approx(5.0 * math.sqrt(5 / 3))
    plugin.after_training_exp(strategy)
    assert not model.head._forward_hooks


def test_terms_by_hand():
    # features at 0 and 90 degrees from the previous ones: 1 - cos = 0 and 1
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert less_forget_loss(f, torch.tensor([[3.0, 0.0], [1.0, 0.0]])).item() == \
        pytest.approx(0.5)
    # two old classes, three new; sample 0 (class 1) has gt 0.5, new top-2 0.6 and 0.2:
    # margin 0.5 -> relu(0.5 - 0.5 + 0.6) = 0.6 and relu(0.5 - 0.5 + 0.2) = 0.2; sample 1 is
    # new (not ranked); sample 2 (class 0): gt 0.9, top-2 0.1, -0.3 -> 0 and 0
    cos = torch.tensor([[0.0, 0.5, 0.6, 0.2, -1.0],
                        [0.0, 0.0, 0.9, 0.0, 0.0],
                        [0.9, 0.0, 0.1, -0.3, -0.5]])
    got = margin_ranking_loss(cos, torch.tensor([1, 2, 0]), 2, 2, 0.5)
    assert got.item() == pytest.approx((0.6 + 0.2 + 0 + 0) / 4)
    assert margin_ranking_loss(cos, torch.tensor([2, 3, 4]), 2, 2, 0.5).item() == 0
    # K above the number of new classes is capped (3 here)
    assert margin_ranking_loss(cos, torch.tensor([1, 2, 0]), 2, 5, 0.5).item() == \
        pytest.approx((0.6 + 0.2 + 0.0 + 0 + 0 + 0) / 6)
    head = CosineHead(2, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]]))
        head.sigma.fill_(3.0)
    assert torch.allclose(head(torch.tensor([[5.0, 0.0]])),
                          torch.tensor([[3.0, 0.0, 3.0 * 2 ** -0.5]]))
    assert adaptive_lambda(5.0, 50, 10) == pytest.approx(5.0 * math.sqrt(5))


def test_training_freezes_old_rows_learns_sigma_and_evaluates_scaled_cosines():
    strategy, benchmark, _ = tiny.strategy("lucir", memory=5)
    model = strategy.model
    assert isinstance(model.head, CosineHead)
    assert any(p is model.head.sigma for g in strategy.optimizer.param_groups
               for p in g["params"])
    strategy.train(benchmark.train_stream[0])
    rows, sigma = model.head.weight[:4].detach().clone(), model.head.sigma.item()
    fresh = model.head.weight[4:].detach().clone()
    strategy.train(benchmark.train_stream[1])
    assert torch.equal(model.head.weight[:4], rows)  # old rows frozen (weight decay too)
    assert not torch.equal(model.head.weight[4:7], fresh[:3])  # new rows learned
    assert torch.equal(model.head.weight[7:], fresh[3:])  # unseen rows untouched
    assert model.head.sigma.item() != sigma
    assert strategy.notes["lucir_lambda"] == pytest.approx(5.0 * math.sqrt(4 / 3))
    assert not model.head._forward_hooks
    x = benchmark.test_stream[1].dataset.eval().batch(range(8))[0]
    model.eval()
    with torch.no_grad():
        want = model.head.sigma * model.head.cosine(model.features(x))
        assert torch.allclose(model(x), want)


def test_bsce_switch_trains_on_the_balanced_softmax(cell, tmp_path, capsys):
    from benchmarks.run import main
    from strategies.bsce import BalancedPrior

    strategy, benchmark, _ = tiny.strategy("lucir", hparams={"loss": "bsce"}, memory=5)
    assert isinstance(strategy._criterion, BalancedPrior)
    strategy.train(benchmark.train_stream[0])
    strategy.train(benchmark.train_stream[1])
    counts = strategy.class_counts[:7]
    assert (counts > 0).all() and len(counts.unique()) > 1  # long-tailed, memory included
    logits, targets = torch.randn(5, 7), torch.tensor([0, 3, 4, 6, 1])
    want = F.cross_entropy(logits + counts.log(), targets)
    assert strategy._criterion(logits, targets, None).item() == pytest.approx(want.item(),
                                                                              abs=1e-5)
    record = cell("lucir", stream="digits-lt:B4-C3?n_max=60&test_per_class=20",
                  hparams={"loss": "bsce"})
    assert [s["n_seen"] for s in record["sessions"]] == [4, 7, 10]
    argv = ["--methods", "lucir", "--set", "lucir.loss=focal", "--out", str(tmp_path / "o")]
    assert main(argv, cell=lambda *a, **k: None) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lucir.loss='focal' is not accepted; accepted: ce, bsce" in err
