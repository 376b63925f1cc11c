"""BSCE: the balanced softmax / sigmoid criterion, raw logits at test, the memory-free prior."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

import methods
from benchmarks import models, streams
from methods import MethodContext, bsce
from strategies.bsce import BalancedPrior
from strategies.distillation import LwFPlugin

TINY = {"multi": "digits:B0-C2?train=200&test=100",
        "single": "digits-lt:B0-C2?n_max=60&test_per_class=10"}
TRAIN = dict(epochs=1, optimizer="adam", lr=1e-2, weight_decay=0.0, batch_size=50,
             eval_batch_size=100, milestones=[], num_workers=0, memory=5,
             memory_mode="per_class", selection="random", amp="off", channels_last=False,
             reset_optimizer=True, memory_labels="own")


def criterion(label_mode, positives, negatives=None):
    """The BSCE criterion after a session start with these training-set counts."""
    balanced = BalancedPrior(label_mode)
    balanced.before_training_exp(SimpleNamespace(class_counts=torch.tensor(positives),
                                                 class_negatives=negatives and
                                                 torch.tensor(negatives)))
    return balanced


def test_single_label_loss_is_cross_entropy_on_log_count_shifted_logits():
    loss = criterion("single", [3.0, 1.0])
    logits, target = torch.tensor([[0.5, 0.0]]), torch.tensor([1])
    # shifted logits [0.5 + log 3, 0 + log 1]; CE of class 1 = log(3 e^0.5 + 1) - 0
    expected = math.log(3 * math.exp(0.5) + 1)  # = 1.78275
    assert math.isclose(loss(logits, target, None).item(), expected, rel_tol=1e-6)
    assert expected > F.cross_entropy(logits, target).item()  # the shift did something


def test_single_label_loss_is_plain_cross_entropy_with_uniform_counts():
    loss = criterion("single", [7.0, 7.0, 7.0])
    logits, targets = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, 0.5]]), torch.tensor([0, 2])
    assert torch.allclose(loss(logits, targets, None), F.cross_entropy(logits, targets))


def test_multi_label_loss_is_bce_on_log_odds_shifted_logits():
    loss = criterion("multi", [2.0, 1.0], [6.0, 4.0])  # prior [log(2/6), log(1/4)]
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[True, False], [False, True]])
    # entry (0,0): -log sigmoid(log 1/3) = -log(1/4) = log 4
    # entry (1,1): -log(1 - sigmoid(1 + log 1/4)) = log(1 + e/4)
    expected = (math.log(4) + math.log(1 + math.e / 4)) / 2  # = 0.952416
    assert math.isclose(loss(logits, targets, mask).item(), expected, rel_tol=1e-6)


def context(label_mode, **train):
    torch.manual_seed(0)
    benchmark, info = streams.build(TINY[label_mode])
    model = models.build("smallcnn", info.num_classes, in_channels=1)
    hparams = methods.resolve_hparams("bsce", {"negatives": "seen"})
    return MethodContext(model, info, hparams, {**TRAIN, **train}, benchmark,
                         torch.device("cpu"))


def balanced_prior(strategy) -> BalancedPrior:
    return next(p for p in strategy.plugins if isinstance(p, BalancedPrior))


@pytest.mark.parametrize("label_mode", ["single", "multi"])
def test_evaluation_scores_are_the_raw_logits(label_mode):
    scores = []

    class Probe(SupervisedPlugin):
        def after_eval_iteration(self, strategy, **kwargs):
            with torch.no_grad():
                scores.append((strategy.mb_output, strategy.model(strategy.mb_x)))

    ctx = context(label_mode)
    ctx.plugins.append(Probe())
    strategy = bsce.build(ctx)
    strategy.train(ctx.benchmark.train_stream[0])
    strategy.eval([ctx.benchmark.test_stream[0]])
    assert balanced_prior(strategy).prior[:2].unique().numel() == 2  # a non-uniform prior
    assert scores and all(torch.equal(got, raw) for got, raw in scores)


@pytest.mark.parametrize("label_mode", ["single", "multi"])
def test_without_memory_old_classes_keep_their_last_known_prior(label_mode):
    ctx = context(label_mode, memory=0)
    strategy = bsce.build(ctx)
    balanced, priors, counts = balanced_prior(strategy), [], []
    for exp in list(ctx.benchmark.train_stream)[:3]:
        strategy.train(exp)
        priors.append(balanced.prior.clone())
        counts.append(strategy.class_counts.clone())
        assert all(math.isfinite(loss) for loss in strategy.epoch_losses)
    assert counts[2][:4].eq(0).all()  # no old sample in session 2
    assert torch.isfinite(priors[2]).all()
    assert torch.equal(priors[2][:2], priors[0][:2])
    assert torch.equal(priors[2][2:4], priors[1][2:4])
    if label_mode == "single":  # the counts of the session each class was learned in
        assert torch.allclose(priors[2][:6],
                              torch.tensor(ctx.info.class_counts[:6]).float().log())
    with torch.no_grad():
        assert torch.isfinite(ctx.model(ctx.benchmark.test_stream[2].dataset[0][0][None])).all()


def test_kd_option_adds_or_drops_the_logit_distillation():
    for kd, expected in (("none", 0), ("logits", 1)):
        ctx = context("single")
        ctx.hparams.update(kd=kd, kd_weight=0.5)
        kd_plugins = [p for p in bsce.build(ctx).plugins
                      if isinstance(p, LwFPlugin)]
        assert len(kd_plugins) == expected
        assert all(p.alpha == 0.5 and p.temperature == 2.0 for p in kd_plugins)
    with pytest.raises(methods.MethodError, match="accepted: none, logits"):
        methods.resolve_hparams("bsce", {"kd": "feature"})
