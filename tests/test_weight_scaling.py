"""The two-stage weight scaling (``two_stage=true`` of lucir and eeil): stage 2 against a
transcription of the long-tailed CIL code (xialeiliu/Long-Tailed-CIL
src/approach/eeil_2stage.py, LAS_utils.LearnableWeightScaling), the class-aware order and
the lr schedule by hand, and the scales in runs."""
import math

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

import tiny
from strategies.weight_scaling import (WeightScaling, class_aware_order, cosine_lr,
                                       train_scaling)


# --- transcribed from xialeiliu/Long-Tailed-CIL src/approach/{LAS_utils,eeil_2stage}.py -----
class LearnableWeightScaling(torch.nn.Module):
    def __init__(self, num_classes):
        super(LearnableWeightScaling, self).__init__()
        self.learned_norm = torch.nn.Parameter(torch.ones(1, num_classes))

    def forward(self, x):
        return self.learned_norm * x


def reference_stage2(heads, lws_models, feature_batches, lr, wd, stage2epoch, lr_factor=10):
    """``_get_optimizer(stage2=True)``, then per epoch ``train_epoch_stage2`` on the given
    (features, targets) batches (the backbone's output) and ``adjust_learning_rate_stage_2``."""
    params = list(heads[-1].parameters())
    optimizer = torch.optim.SGD([{"params": params}, {"params": lws_models.parameters()}],
                                lr, weight_decay=wd, momentum=0.9)
    for e in range(stage2epoch):
        for feat, target in feature_batches[e]:
            output = []
            for idx in range(len(heads)):
                output.append(heads[idx](feat.detach()))
                output[idx] = lws_models[idx](output[idx])
            loss = torch.nn.CrossEntropyLoss(None)(torch.cat(output, dim=1), target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(heads.parameters(), 10000)
            optimizer.step()
        epoch = e + 1
        lr_min = 0
        lr_max = lr
        lr_e = lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(epoch / stage2epoch * 3.1415926535))
        for idx, param_group in enumerate(optimizer.param_groups):
            if idx == 1:
                param_group['lr'] = (1 / lr_factor) * lr_e
            else:
                param_group['lr'] = 1.00 * lr_e
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 3])
def test_stage2_matches_the_reference(epochs):
    torch.manual_seed(0)
    d, tasks = 6, [3, 2]  # session 1 of a 3 + 2 stream, two unseen classes in the suite
    heads = torch.nn.ModuleList([torch.nn.Linear(d, k) for k in tasks])
    lws = torch.nn.ModuleList([LearnableWeightScaling(k) for k in tasks])
    with torch.no_grad():
        lws[0].learned_norm.copy_(torch.tensor([[0.9, 1.2, 1.0]]))  # fitted in session 0
    head = torch.nn.Linear(d, 7)
    scale = torch.nn.Parameter(torch.ones(7))
    with torch.no_grad():
        head.weight[:5] = torch.cat([h.weight for h in heads])
        head.bias[:5] = torch.cat([h.bias for h in heads])
        scale[:3] = lws[0].learned_norm[0]
    unseen = head.weight[5:].detach().clone()
    batches = [[(torch.randn(8, d), torch.randint(0, 5, (8,))) for _ in range(3)]
               for _ in range(epochs)]
    reference_stage2(heads, lws, batches, 0.1, 5e-4, epochs)
    train_scaling(head, scale, lambda e: ((f, y, None) for f, y in batches[e - 1]),
                  lambda z, y, m: F.cross_entropy(z, y), 3, 5, epochs=epochs, lr=0.1,
                  weight_decay=5e-4)
    assert torch.allclose(head.weight[:3], heads[0].weight, atol=1e-6)  # old rows kept
    assert torch.allclose(head.weight[3:5], heads[1].weight, atol=1e-5)
    assert torch.allclose(head.bias[3:5], heads[1].bias, atol=1e-5)
    want = torch.cat([m.learned_norm[0] for m in lws])
    assert torch.allclose(scale[:5], want, atol=1e-5)
    assert (want - 1).abs().max() > 1e-3  # the scales moved
    assert torch.equal(head.weight[5:], unseen)


def test_class_aware_order_by_hand():
    rows_of = [torch.arange(10), torch.tensor([10, 11]), torch.tensor([12])]
    order = class_aware_order(rows_of, 24, torch.Generator().manual_seed(0))
    # classes visited in cycles of 3, 4 rows each: 8 rows of each class in 24
    counts = torch.bincount(torch.bucketize(order, torch.tensor([9, 11])), minlength=3)
    assert counts.tolist() == [8, 8, 8]
    runs = order.view(6, 4)  # each run of 4 comes from one class
    assert all(len(set(torch.bucketize(r, torch.tensor([9, 11])).tolist())) == 1 for r in runs)
    small = order[torch.isin(order, torch.tensor([10, 11]))]
    assert sorted(small[:2].tolist()) == [10, 11]  # a class's rows cycle, each once a cycle
    assert len(class_aware_order(rows_of, 5, torch.Generator())) == 5


def test_cosine_lr_by_hand():
    assert cosine_lr(0.1, 30, 30) == pytest.approx(0.0)
    assert cosine_lr(0.1, 15, 30) == pytest.approx(0.05)
    assert cosine_lr(0.1, 10, 30) == pytest.approx(0.075)


@pytest.mark.parametrize("method", ["lucir", "eeil"])
def test_two_stage_scales_the_test_logits(method):
    outputs = []

    class Probe(SupervisedPlugin):
        def after_eval_iteration(self, strategy, **kwargs):
            with torch.no_grad():
                outputs.append((strategy.mb_output, strategy.model(strategy.mb_x)))

    overrides = {"two_stage": True, "stage2_epochs": 2}
    if method == "eeil":
        overrides["ft_epochs"] = 1
    strategy, benchmark, _ = tiny.strategy(method, hparams=overrides, plugins=[Probe()], memory=5)
    model = strategy.model
    scaling = next(p for p in strategy.plugins if isinstance(p, WeightScaling))
    strategy.train(benchmark.train_stream[0])
    assert strategy.notes["lws_epochs"] == 2 and strategy.notes["lws_fit_s"] > 0
    rows = model.head.weight[:4].detach().clone()
    strategy.train(benchmark.train_stream[1])
    if method == "lucir":  # old rows frozen in both stages (eeil's stage 1 trains them)
        assert torch.equal(model.head.weight[:4], rows)
    scale = scaling.scale.detach()
    assert (scale[:7] != 1).all() and (scale[7:] == 1).all()
    strategy.eval([benchmark.test_stream[1]])
    assert outputs and all(torch.allclose(out, raw * scale, atol=1e-5) for out, raw in outputs)
