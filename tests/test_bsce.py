"""BSCE: the balanced softmax / sigmoid criterion, raw logits at test, the prior's sources
(supervised, session, stream) and the prior of classes absent from the session (last, exclude)."""
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
             reset_optimizer=True, memory_labels="own", replay_batch="concat")


def session(positives, negatives=None, rows=0):
    """What BalancedPrior reads of a strategy at a session start."""
    return SimpleNamespace(class_counts=torch.tensor(positives),
                           class_negatives=negatives and torch.tensor(negatives),
                           adapted_dataset=[None] * rows)


def criterion(label_mode, positives, negatives=None):
    """The BSCE criterion after a session start with these training-set counts."""
    balanced = BalancedPrior(label_mode)
    balanced.before_training_exp(session(positives, negatives))
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
    hparams = methods.resolve_hparams("bsce", {"negatives": "seen", "prior": "supervised",
                                              "absent": "last"})
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


def test_multi_label_prior_sources_by_hand():
    # 40 images in the session's set; class 0 (old) positive in 2 memory rows and supervised
    # negative in 3, class 1 (new) positive in 30 and negative in 10
    state = session([2.0, 30.0], [3.0, 10.0], rows=40)
    expected = {"supervised": [math.log(2 / 3), math.log(3)],      # about 0 apart
                "session": [math.log(2 / 38), math.log(30 / 10)],  # unlabelled as negatives
                "stream": [math.log(5 / 95), math.log(20 / 80)]}   # 100 images: 5 and 20
    for source, want in expected.items():
        balanced = BalancedPrior("multi", source, stream_counts=[5, 20], stream_images=100)
        balanced.before_training_exp(state)
        assert torch.allclose(balanced.prior, torch.tensor(want)), source
    single = BalancedPrior("single", "stream", stream_counts=[5, 20])
    single.before_training_exp(session([2.0, 30.0]))
    assert torch.allclose(single.prior, torch.tensor([5.0, 20.0]).log())
    with pytest.raises(ValueError, match="needs the stream's class counts"):
        BalancedPrior("multi", "stream", stream_counts=[5, 20])


def test_absent_classes_keep_their_last_prior_or_leave_the_loss():
    # session 0: class 0 alone with 10 samples (and new classes 1, 2 not yet seen); session
    # 1: no sample of class 0, 4 each of classes 1, 2. Logits 0, target class 1.
    z, y = torch.zeros(1, 3, requires_grad=True), torch.tensor([1])
    grads = {}
    for absent in ("last", "exclude"):
        balanced = BalancedPrior("single", absent=absent)
        balanced.before_training_exp(session([10.0, 0.0, 0.0]))
        balanced.before_training_exp(session([0.0, 4.0, 4.0]))
        grads[absent], = torch.autograd.grad(balanced(z, y, None), z)
    # last: shifted [log 10, log 4, log 4] -> p = [10, 4, 4] / 18; d/dz_0 = p_0 = 0.5556,
    # more than plain CE's 1/3: the old logit is pushed down harder than without BSCE
    assert grads["last"][0, 0].item() == pytest.approx(10 / 18, rel=1e-6)
    plain, = torch.autograd.grad(F.cross_entropy(z, y), z)
    assert plain[0, 0].item() == pytest.approx(1 / 3, rel=1e-6)
    # exclude: the class is out of the softmax, p = [0, 1/2, 1/2]: no gradient on it
    assert grads["exclude"][0, 0].item() == 0.0
    assert grads["exclude"][0, 1].item() == pytest.approx(-0.5, rel=1e-6)
    # multi-label: an excluded class's negative costs nothing and pushes nothing
    balanced = BalancedPrior("multi", absent="exclude")
    balanced.before_training_exp(session([0.0, 4.0], [6.0, 2.0]))
    zm = torch.tensor([[3.0, 0.0]], requires_grad=True)
    loss = balanced(zm, torch.zeros(1, 2), torch.tensor([[True, False]]))
    assert loss.item() == 0.0 and torch.autograd.grad(loss, zm)[0].abs().sum() == 0


def test_stream_prior_counts_the_streams_distinct_training_images():
    ctx = context("multi")
    ctx.hparams.update(prior="stream")
    balanced = balanced_prior(bsce.build(ctx))
    assert balanced.stream_images == 200  # digits ?train=200, images shared by sessions
    assert balanced.stream_counts == ctx.info.class_counts
    for key, bad in (("prior", "memory"), ("absent", "zero")):
        with pytest.raises(methods.MethodError, match="accepted"):
            methods.resolve_hparams("bsce", {key: bad})
    assert methods.resolve_hparams("bsce", {})["prior"] == "session"  # the valid sweep's pick
    assert methods.resolve_hparams("bsce", {})["absent"] == "exclude"


@pytest.mark.parametrize("label_mode", ["single", "multi"])
def test_without_memory_excluded_old_classes_train_finitely(label_mode):
    from strategies.bsce import EXCLUDED
    ctx = context(label_mode, memory=0)
    ctx.hparams.update(absent="exclude")
    strategy = bsce.build(ctx)
    for exp in list(ctx.benchmark.train_stream)[:3]:
        strategy.train(exp)
        assert all(math.isfinite(loss) for loss in strategy.epoch_losses)
    # in session 2, classes 0-3 have no positive (multi-label, negatives=seen: negatives only)
    prior = balanced_prior(strategy).prior
    assert prior[:4].eq(EXCLUDED).all() and (prior[4:6] > EXCLUDED).all()
