"""Tests for benchmarks.metrics."""

from types import SimpleNamespace

import pytest
import torch
from sklearn.metrics import average_precision_score

from benchmarks.metrics import (
    ScoreCollector,
    average_precision,
    f1_scores,
    frequency_groups,
    session_metrics,
    forgetting,
    per_class_on_subsets,
    summarize,
)

# Class 1 has no positive target; class 0 is the hand-worked 4-sample example.
AP_SCORES = torch.tensor([[0.9, 0.3], [0.8, 0.2], [0.8, 0.1], [0.1, 0.0]])
AP_TARGETS = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])

# 3 samples x 2 classes for f1_scores; at threshold 0.8 the predictions are
# class 0: [1, 1, 0] -> TP=1 FP=1 FN=1, class 1: [0, 1, 1] -> TP=1 FP=1 FN=0.
F1_PROBS = torch.tensor([[0.9, 0.2], [0.85, 0.9], [0.1, 0.95]])
F1_TARGETS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])


def _sklearn_ap(scores, targets):
    return [
        average_precision_score(targets[:, c].numpy(), scores[:, c].numpy())
        for c in range(scores.shape[1])
    ]


@pytest.mark.parametrize("n_levels", [3, 10, 10_000])
def test_average_precision_matches_sklearn_with_ties(n_levels):
    generator = torch.Generator().manual_seed(n_levels)
    scores = torch.randint(0, n_levels, (300, 12), generator=generator).float()
    targets = (torch.rand(300, 12, generator=generator) < 0.3).float()
    targets[0] = 1  # every class has a positive
    assert average_precision(scores, targets).tolist() == pytest.approx(
        _sklearn_ap(scores, targets), abs=1e-12
    )


def test_average_precision_hand_worked():
    # Class 0, thresholds 0.9 / 0.8 (tie of a positive and a negative) / 0.1:
    #   P = 1/1, 2/3, 3/4 and recall steps of 1/3 each, so
    #   AP = (1 + 2/3 + 3/4) / 3 = 29/36 (ignoring the tie would give 11/12).
    ap = average_precision(AP_SCORES, AP_TARGETS)
    assert ap[0].item() == pytest.approx(29 / 36)
    assert _sklearn_ap(AP_SCORES[:, :1], AP_TARGETS[:, :1]) == pytest.approx([29 / 36])
    assert torch.isnan(ap[1])


def test_class_without_positive_is_none_and_excluded_from_map():
    logits = torch.cat([AP_SCORES, torch.randn(4, 1)], dim=1)
    targets = torch.cat([AP_TARGETS, torch.tensor([[1.0], [0.0], [1.0], [0.0]])], dim=1)
    result = session_metrics(logits, targets, 3, "multi", [5, 5, 5])
    expected_ap2 = 100 * average_precision(logits[:, 2:], targets[:, 2:]).item()
    assert result["per_class"][0] == pytest.approx(100 * 29 / 36)
    assert result["per_class"][1] is None
    assert result["mAP"] == pytest.approx((100 * 29 / 36 + expected_ap2) / 2)


def test_f1_scores_hand_worked():
    # class 0: P = 1/2, R = 1/2, F1 = 1/2; class 1: P = 1/2, R = 1, F1 = 2/3.
    # CF1 = (1/2 + 2/3) / 2 = 7/12 (not 2*CP*CR/(CP+CR) = 0.6).
    # Overall: TP = 2, FP = 2, FN = 1 -> OP = 1/2, OR = 2/3, OF1 = 4/7.
    result = f1_scores(F1_PROBS, F1_TARGETS, threshold=0.8)
    expected = {"CP": 50, "CR": 75, "CF1": 700 / 12, "OP": 50, "OR": 200 / 3, "OF1": 400 / 7}
    assert result == pytest.approx(expected)


def test_f1_scores_threshold_changes_result():
    # At 0.88 class 0 predicts only row 0: P = 1, R = 1/2, F1 = 2/3; class 1 unchanged.
    # Overall: TP = 2, FP = 1, FN = 1 -> OP = OR = OF1 = 2/3.
    result = f1_scores(F1_PROBS, F1_TARGETS, threshold=0.88)
    expected = {"CP": 75, "CR": 75, "CF1": 200 / 3, "OP": 200 / 3, "OR": 200 / 3, "OF1": 200 / 3}
    assert result == pytest.approx(expected)


def test_f1_scores_zero_when_nothing_is_predicted():
    result = f1_scores(F1_PROBS, F1_TARGETS, threshold=0.99)
    assert result == {"CP": 0.0, "CR": 0.0, "CF1": 0.0, "OP": 0.0, "OR": 0.0, "OF1": 0.0}


def test_f1_scores_class_without_positive_only_counts_overall():
    # Extra class 2 has no positive target but one false positive.
    probs = torch.cat([F1_PROBS, torch.tensor([[0.9], [0.0], [0.0]])], dim=1)
    targets = torch.cat([F1_TARGETS, torch.zeros(3, 1)], dim=1)
    base = f1_scores(F1_PROBS, F1_TARGETS)
    result = f1_scores(probs, targets)
    assert {k: result[k] for k in ("CP", "CR", "CF1")} == pytest.approx(
        {k: base[k] for k in ("CP", "CR", "CF1")}
    )
    assert result["OP"] == pytest.approx(100 * 2 / 5)


def test_frequency_groups_tertiles():
    assert frequency_groups([100, 50, 10, 5, 1, 80]) == {
        "head": [0, 5],
        "medium": [1, 2],
        "tail": [3, 4],
    }


def test_frequency_groups_ties_are_stable_and_uneven_sizes():
    assert frequency_groups([3, 7, 3, 3]) == {"head": [0, 1], "medium": [2], "tail": [3]}


@pytest.mark.parametrize("label_mode", ["multi", "single"])
def test_session_metrics_ignores_unseen_columns(label_mode):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 6, generator=generator)
    if label_mode == "multi":
        targets = (torch.rand(50, 6, generator=generator) < 0.4).float()
        targets[:, 0] = 1  # every row shows a seen class
    else:
        targets = torch.randint(0, 4, (50,), generator=generator)
    counts = [100, 50, 10, 5, 1, 80]
    result = session_metrics(logits, targets, 4, label_mode, counts)
    changed = logits.clone()
    changed[:, 4:] = 100 * torch.randn(50, 2, generator=generator)
    assert session_metrics(changed, targets, 4, label_mode, counts) == result
    assert len(result["per_class"]) == 4


def test_session_metrics_multi_counts_rows_without_seen_label_as_negatives():
    """A test member with an all-zero row over the seen classes (a COCO image whose only
    objects of seen classes are crowd annotations) is a negative for every class."""
    logits = torch.cat([AP_SCORES, torch.zeros(4, 1)], dim=1)
    targets = torch.cat([AP_TARGETS, torch.zeros(4, 1)], dim=1)
    extra_logits = torch.tensor([[5.0, 5.0, 0.0]])
    extra_targets = torch.tensor([[0.0, 0.0, 1.0]])
    all_logits, all_targets = torch.cat([logits, extra_logits]), torch.cat([targets, extra_targets])
    with_extra = session_metrics(all_logits, all_targets, 2, "multi", [5, 5, 5])
    expected = average_precision_score(all_targets[:, 0].numpy(), all_logits[:, 0].numpy())
    assert with_extra["per_class"][0] == pytest.approx(100 * expected)
    assert with_extra["per_class"][0] < session_metrics(logits, targets, 2, "multi",
                                                        [5, 5, 5])["per_class"][0]


def test_session_metrics_multi_groups():
    # Class 0 is head, class 2 medium, class 1 tail; class 3 (tail) is unseen.
    scores = torch.tensor([[0.9, 0.1, 0.8], [0.2, 0.7, 0.3], [0.5, 0.4, 0.6]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    logits = torch.cat([scores, torch.zeros(3, 1)], dim=1)
    targets = torch.cat([targets, torch.ones(3, 1)], dim=1)
    result = session_metrics(logits, targets, 3, "multi", [90, 2, 40, 1, 50, 30])
    ap = _sklearn_ap(scores, targets[:, :3])
    assert result["per_class"] == pytest.approx([100 * a for a in ap])
    assert result["head_mAP"] == pytest.approx(100 * ap[0])
    assert result["medium_mAP"] == pytest.approx(100 * ap[2])
    assert result["tail_mAP"] == pytest.approx(100 * ap[1])
    assert set(result) == {"mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "per_class",
                           "head_mAP", "medium_mAP", "tail_mAP", "old_mAP", "new_mAP"}  # fmt: skip


def test_session_metrics_single_by_hand():
    # Seen classes 0..2; column 3 (unseen) would win every argmax if used.
    logits = torch.tensor(
        [
            [3.0, 1.0, 0.0, 9.0],  # target 0, predicted 0
            [1.0, 2.0, 0.0, 9.0],  # target 0, predicted 1
            [0.0, 2.0, 1.0, 9.0],  # target 1, predicted 1
            [0.0, 1.0, 2.0, 9.0],  # target 2, predicted 2
            [2.0, 1.0, 0.0, 9.0],  # target 2, predicted 0
        ]
    )
    targets = torch.tensor([0, 0, 1, 2, 2])
    # Counts rank 3, 0 | 1 | 2 -> head {0, 3}, medium {1}, tail {2}.
    result = session_metrics(logits, targets, 3, "single", [10, 5, 1, 20])
    assert result.pop("per_class") == pytest.approx([50.0, 100.0, 50.0])
    assert result == pytest.approx(
        {"acc": 60.0, "head_acc": 50.0, "medium_acc": 100.0, "tail_acc": 50.0,
         "old_acc": None, "new_acc": 60.0}
    )


def test_session_metrics_single_class_without_sample_is_none():
    # Both samples are class 0; the second is predicted as class 1.
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    result = session_metrics(logits, torch.tensor([0, 0]), 3, "single", [9, 5, 1])
    assert result["per_class"] == [50.0, None, None]
    assert result["acc"] == 50.0
    assert result["medium_acc"] is None and result["tail_acc"] is None


def _multi_session(per_class, cf1=0.0, of1=0.0):
    defined = [v for v in per_class if v is not None]
    return {"mAP": sum(defined) / len(defined), "CF1": cf1, "OF1": of1, "per_class": per_class,
            "head_mAP": 1.0, "medium_mAP": 2.0, "tail_mAP": None}  # fmt: skip


def test_summarize_multi_three_sessions():
    sessions = [
        _multi_session([80.0, 60.0]),  # mAP 70
        _multi_session([70.0, 65.0, 45.0]),  # mAP 60
        _multi_session([60.0, None, 40.0, 80.0], cf1=33.0, of1=44.0),  # mAP 60
    ]
    # Forgetting over classes 0..2: class 0 80 - 60 = 20, class 1 skipped (None),
    # class 2 45 - 40 = 5 -> 12.5. Class 3 is new in the last session.
    assert summarize(sessions, "multi") == pytest.approx(
        {
            "avg_mAP": 190 / 3,
            "last_mAP": 60.0,
            "last_CF1": 33.0,
            "last_OF1": 44.0,
            "last_head_mAP": 1.0,
            "last_medium_mAP": 2.0,
            "last_tail_mAP": None,
            "last_old_mAP": None,
            "last_new_mAP": None,
            "forgetting": 12.5,
        }
    )


def test_summarize_single_three_sessions():
    def session(acc, per_class):
        return {"acc": acc, "per_class": per_class,
                "head_acc": 3.0, "medium_acc": 4.0, "tail_acc": 5.0}  # fmt: skip

    sessions = [
        session(90.0, [90.0, None]),
        session(70.0, [60.0, 80.0, 70.0]),
        session(50.0, [70.0, 50.0, 80.0, 20.0]),
    ]
    # class 0: 90 - 70 = 20, class 1: 80 - 50 = 30, class 2: 70 - 80 = -10 -> 40 / 3.
    assert summarize(sessions, "single") == pytest.approx(
        {
            "avg_acc": 70.0,
            "last_acc": 50.0,
            "last_head_acc": 3.0,
            "last_medium_acc": 4.0,
            "last_tail_acc": 5.0,
            "last_old_acc": None,
            "last_new_acc": None,
            "forgetting": 40 / 3,
        }
    )


def test_summarize_single_session_has_no_forgetting():
    assert summarize([_multi_session([50.0])], "multi")["forgetting"] is None


def _fake_strategy(label_mode, n_seen, class_counts):
    info = SimpleNamespace(label_mode=label_mode, class_counts=class_counts)
    return SimpleNamespace(n_seen=n_seen, info=info, mb_output=None, mb_y=None,
                           experience=SimpleNamespace(dataset=None))


def _drive(collector, strategy, logits, targets, batch_size=7):
    collector.before_eval_exp(strategy)
    for batch_logits, batch_targets in zip(logits.split(batch_size), targets.split(batch_size)):
        strategy.mb_output, strategy.mb_y = batch_logits, batch_targets
        collector.after_eval_iteration(strategy)
    collector.after_eval_exp(strategy)
    return collector.last


@pytest.mark.parametrize("label_mode", ["multi", "single"])
def test_score_collector_matches_session_metrics(label_mode):
    generator = torch.Generator().manual_seed(1)
    counts = [30, 20, 10, 5, 1]
    if label_mode == "multi":
        targets = (torch.rand(40, 5, generator=generator) < 0.5).float()
        targets[:, 1] = 1
    else:
        targets = torch.randint(0, 4, (40,), generator=generator)
    logits = torch.randn(40, 5, generator=generator, requires_grad=True)
    strategy = _fake_strategy(label_mode, 4, counts)
    collector = ScoreCollector(threshold=0.6)
    _drive(collector, strategy, torch.randn(10, 5), targets[:10])  # earlier experience
    result = _drive(collector, strategy, logits, targets)
    assert result == session_metrics(logits.detach(), targets, 4, label_mode, counts, 0.6)


def test_a_model_whose_scores_never_change_has_no_multilabel_forgetting():
    """Session t's test set holds the images of every class seen by t; a fixed scorer's AP of
    an old class falls as images of new classes join (more negatives), which is not
    forgetting: compared on the same images, the drop is 0."""
    gen = torch.Generator().manual_seed(0)
    targets = (torch.rand(300, 6, generator=gen) < 0.3).float()
    scores = targets * 1.5 + torch.randn(300, 6, generator=gen)  # one fixed model
    index = torch.arange(300)
    history, subsets = [], []
    for n_seen in (2, 4, 6):
        rows = torch.nonzero(targets[:, :n_seen].any(1)).flatten()
        history.append(session_metrics(scores[rows], targets[rows], n_seen, "multi",
                                       [1] * 6)["per_class"])
        subsets.append((rows, n_seen))
    assert forgetting(history) > 1  # the naive comparison across test sets
    final_on_earlier = per_class_on_subsets(scores[rows], targets[rows], index[rows],
                                            subsets[:-1], "multi", 6)
    assert forgetting(history, final_on_earlier) == pytest.approx(0.0, abs=1e-9)



def test_single_label_forgetting_counts_old_images_now_given_to_new_classes():
    """Class 0 (2 images) is right after session 0; the final model gives one of its images
    to class 3, learned later: its accuracy falls from 100 to 50, forgetting 50."""
    labels, index = torch.tensor([0, 0, 1, 1, 2, 3]), torch.arange(6)
    first = torch.tensor([[5., 0], [5., 0], [0, 5.], [0, 5.]])
    final = torch.tensor([[5., 0, 0, 0], [0, 0, 0, 5.], [0, 5., 0, 0], [0, 5., 0, 0],
                          [0, 0, 5., 0], [0, 0, 0, 5.]])
    history = [session_metrics(first, labels[:4], 2, "single", [1] * 4)["per_class"],
               session_metrics(final, labels, 4, "single", [1] * 4)["per_class"]]
    finals = per_class_on_subsets(final, labels, index, [(torch.arange(4), 2)], "single", 4)
    assert finals == [[50.0, 100.0]]
    assert forgetting(history, finals) == pytest.approx(25.0)  # classes 0 and 1: 50 and 0

def test_forgetting_takes_the_largest_same_image_drop():
    history = [[80.0, None], [70.0, 60.0], [50.0, 40.0, 90.0]]
    finals = [[55.0, None], [52.0, 40.0]]
    # class 0: max(80 - 55, 70 - 52) = 25; class 1: 60 - 40 = 20 -> 22.5
    assert forgetting(history, finals) == pytest.approx(22.5)


def test_old_and_new_split_the_seen_classes_at_the_session_start():
    # 4 seen classes, 2 old. AP per class on 4 images, worked by hand:
    targets = torch.tensor([[1., 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]])
    scores = torch.tensor([[.9, .1, .2, .8], [.8, .9, .1, .7], [.1, .8, .3, .6], [.2, .2, .9, .5]])
    # class 0: ranks .9(+) .8(-) .2(-) .1(+) -> AP = (1/1 + 2/4) / 2 = 0.75
    # class 1: .9(+) .8(+) .2(-) .1(-) -> 1.0; class 2: .9(+) .3(-) .2(+) .1(-) -> (1 + 2/3)/2
    # class 3: .8(-) .7(+) .6(-) .5(+) -> (1/2 + 2/4) / 2 = 0.5
    result = session_metrics(scores, targets, 4, "multi", [1] * 4, n_old=2)
    assert result["old_mAP"] == pytest.approx(100 * (0.75 + 1.0) / 2)
    assert result["new_mAP"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 0.5) / 2)
    labels = torch.tensor([0, 1, 2, 3, 3])
    logits = torch.tensor([[5., 0, 0, 0], [0, 0, 5, 0], [0, 0, 5, 0], [0, 0, 0, 5], [5, 0, 0, 0]])
    single = session_metrics(logits, labels, 4, "single", [1] * 4, n_old=2)
    assert single["old_acc"] == pytest.approx(50.0) and single["new_acc"] == pytest.approx(
        100 * 2 / 3)  # old: 1 of 2 right; new: 2 of 3
    assert session_metrics(logits, labels, 4, "single", [1] * 4)["old_acc"] is None
