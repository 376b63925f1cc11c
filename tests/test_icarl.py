"""iCaRL: class means, NME prediction and the distillation criterion against a transcription
of the long-tailed CIL code (xialeiliu/Long-Tailed-CIL src/approach/icarl.py)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

import methods
import tiny
from strategies.distillation import SummedSigmoidKD
from strategies.nme import NMEClassifier, class_means, nme_scores


# --- transcribed from xialeiliu/Long-Tailed-CIL src/approach/icarl.py ----------------------
def reference_means(extracted_features, extracted_targets):
    exemplar_means = []
    extracted_features = extracted_features / extracted_features.norm(dim=1).view(-1, 1)
    extracted_targets = np.array(extracted_targets)
    for curr_cls in np.unique(extracted_targets):
        cls_ind = np.where(extracted_targets == curr_cls)[0]
        cls_feats = extracted_features[cls_ind]
        cls_feats_mean = cls_feats.mean(0) / cls_feats.mean(0).norm()
        exemplar_means.append(cls_feats_mean)
    return exemplar_means


def reference_classify(exemplar_means, features):
    means = torch.stack(exemplar_means)
    means = torch.stack([means] * features.shape[0])
    means = means.transpose(1, 2)
    features = features / features.norm(dim=1).view(-1, 1)
    features = features.unsqueeze(2)
    features = features.expand_as(means)
    dists = (features - means).pow(2).sum(1).squeeze()
    return dists, dists.argmin(1)


def reference_criterion(outputs, targets, outputs_old, n_old, lamb=1.0):
    loss = F.cross_entropy(outputs, targets)
    g = torch.sigmoid(outputs[:, :n_old])
    q_i = torch.sigmoid(outputs_old[:, :n_old])
    loss += lamb * sum(F.binary_cross_entropy(g[:, y], q_i[:, y]) for y in range(n_old))
    return loss
# ---------------------------------------------------------------------------------------------


def test_class_means_and_nme_prediction_match_the_reference():
    torch.manual_seed(0)
    feats, labels = torch.randn(40, 8) * 3, torch.arange(5).repeat(8)
    want = torch.stack(reference_means(feats, labels.tolist()))
    got = class_means(feats, labels, 5)
    assert torch.allclose(got, want, atol=1e-5)
    test = torch.randn(25, 8)
    dists, pred = reference_classify(list(want), test)
    scores = nme_scores(test, got, torch.ones(5, dtype=torch.bool))
    assert torch.allclose(-scores, dists, atol=1e-5)
    assert torch.equal(scores.argmax(1), pred)


def test_nme_by_hand():
    # class 0: features (2, 0) and (0, 2) -> normalised mean (1, 1)/sqrt 2; class 1: (0, -5)
    feats = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, -5.0]])
    means = class_means(feats, torch.tensor([0, 0, 1]), 3)
    r = 2 ** -0.5
    assert torch.allclose(means, torch.tensor([[r, r], [0.0, -1.0], [0.0, 0.0]]))
    known = torch.tensor([True, True, False])
    scores = nme_scores(torch.tensor([[3.0, 3.0], [1.0, -4.0]]), means, known)
    assert scores[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    # (3, 3) normalised is (r, r): squared distance to (0, -1) is r^2 + (r + 1)^2 = 2 + 2r
    assert scores[0, 1].item() == pytest.approx(-(2 + 2 * r), abs=1e-5)
    assert scores.argmax(1).tolist() == [0, 1] and (scores[:, 2] < -4).all()


def test_distillation_matches_the_reference_criterion():
    torch.manual_seed(0)
    outputs, old = torch.randn(6, 7, requires_grad=True), torch.randn(6, 7)
    targets = torch.randint(0, 7, (6,))
    strategy = SimpleNamespace(n_old=4, mb_output=outputs, prev_output=old,
                               loss=F.cross_entropy(outputs, targets))
    SummedSigmoidKD(0.5).before_backward(strategy)
    want = reference_criterion(outputs, targets, old, 4, lamb=0.5)
    assert strategy.loss.item() == pytest.approx(want.item(), abs=1e-5)


def test_evaluation_scores_are_the_nme_of_the_memory():
    seen = []

    class Probe(SupervisedPlugin):
        def after_eval_iteration(self, strategy, **kwargs):
            with torch.no_grad():
                seen.append((strategy.mb_output, strategy.model.features(strategy.mb_x)))

    strategy, benchmark, _ = tiny.strategy("icarl", plugins=[Probe()], memory=5)
    model = strategy.model
    nme = next(p for p in strategy.plugins if isinstance(p, NMEClassifier))
    for t in range(2):
        strategy.train(benchmark.train_stream[t])
    buffer = nme.memory.buffer
    assert nme.known.tolist() == [True] * 7 + [False] * 3
    with torch.no_grad():
        feats = model.eval().features(buffer.eval().batch(range(len(buffer)))[0])
    assert torch.allclose(nme.means, class_means(feats, buffer.targets, 10), atol=1e-5)
    strategy.eval([benchmark.test_stream[1]])
    assert seen and all(torch.allclose(out, nme_scores(f, nme.means, nme.known), atol=1e-5)
                        for out, f in seen)
    assert nme._hook is None  # the hook is gone after evaluation
    assert not methods.discover()["icarl"].label_modes & {"multi"}
