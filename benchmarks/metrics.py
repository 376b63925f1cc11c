"""Evaluation metrics for imbalance-aware class-incremental learning.

All reported values are percentages (0-100) as python floats; a value that
cannot be computed (a class without positive test samples, an empty frequency
group, ...) is ``None`` so that results stay JSON-friendly. Tensor math runs on
the device of the inputs (CPU or CUDA).
"""

import math
from typing import Optional

import numpy as np
import torch
from avalanche.core import SupervisedPlugin

GROUPS = ("head", "medium", "tail")


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class average precision, vectorised over classes.

    Follows ``sklearn.metrics.average_precision_score`` including ties:
    ``AP = sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds, i.e.
    tied scores are counted as a single threshold.

    Args:
        scores: (N, C) float scores, higher means more likely positive.
        targets: (N, C) multi-hot {0, 1} labels.

    Returns:
        (C,) float64 tensor in [0, 1]; NaN for a class without positives.
    """
    sorted_scores, order = scores.T.sort(dim=1, descending=True)
    hits = targets.T.gather(1, order).double()
    tp = hits.cumsum(dim=1)
    ranks = torch.arange(1, tp.shape[1] + 1, device=tp.device, dtype=tp.dtype)
    precision = tp / ranks
    # A threshold sits at the last position of each run of tied scores.
    is_threshold = torch.ones_like(sorted_scores, dtype=torch.bool)
    is_threshold[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    # tp is non-decreasing, so the running max of tp at thresholds is the tp of
    # the latest threshold; shift by one to get the previous threshold's tp.
    tp_at_thresholds = torch.where(is_threshold, tp, torch.zeros_like(tp))
    previous_tp = tp_at_thresholds.cummax(dim=1).values.roll(1, dims=1)
    previous_tp[:, 0] = 0
    gains = torch.where(is_threshold, (tp - previous_tp) * precision, torch.zeros_like(tp))
    n_positive = tp[:, -1]
    return gains.sum(dim=1) / torch.where(n_positive > 0, n_positive, torch.nan)


def f1_scores(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.8) -> dict:
    """Per-class and overall precision / recall / F1 of thresholded predictions.

    Definitions as in KRT (Dong et al., ICCV 2023) and CSC. A prediction is
    positive when ``prob >= threshold``. Per class c:
    ``P_c = TP_c / (TP_c + FP_c)`` (0 without positive prediction),
    ``R_c = TP_c / (TP_c + FN_c)`` and ``F1_c = 2 P_c R_c / (P_c + R_c)``
    (0 when ``P_c + R_c = 0``). CP, CR and CF1 are the means of P_c, R_c and
    F1_c over classes with at least one positive target. Note that CF1 is the
    mean of per-class F1, not ``2 CP CR / (CP + CR)`` as some papers use.
    Overall: ``OP = sum TP / (sum TP + sum FP)``, ``OR = sum TP / (sum TP +
    sum FN)`` and ``OF1 = 2 OP OR / (OP + OR)`` (0 when both are 0).

    Args:
        probs: (N, C) probabilities in [0, 1] (sigmoid outputs).
        targets: (N, C) multi-hot {0, 1} labels.
        threshold: decision threshold.

    Returns:
        Dict with percent floats ``CP, CR, CF1, OP, OR, OF1`` (the per-class
        means are None when no class has a positive target).
    """
    predicted = probs >= threshold
    actual = targets.bool()
    tp = (predicted & actual).sum(dim=0).double()
    fp = (predicted & ~actual).sum(dim=0).double()
    fn = (~predicted & actual).sum(dim=0).double()
    has_positive = (tp + fn) > 0
    per_class = {
        "CP": _ratio(tp, tp + fp),
        "CR": _ratio(tp, tp + fn),
        # 2TP / (2TP + FP + FN) equals 2PR / (P + R), and is 0 when TP = 0.
        "CF1": _ratio(2 * tp, 2 * tp + fp + fn),
    }
    result = {
        name: _to_float(100 * values[has_positive].mean()) for name, values in per_class.items()
    }
    tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    result["OP"] = _to_float(100 * _ratio(tp, tp + fp))
    result["OR"] = _to_float(100 * _ratio(tp, tp + fn))
    result["OF1"] = _to_float(100 * _ratio(2 * tp, 2 * tp + fp + fn))
    return result


def frequency_groups(class_counts: list[int]) -> dict[str, list[int]]:
    """Tertile split of classes into 'head', 'medium' and 'tail' groups.

    Classes are ranked by training-image count (descending, ties by class
    index) and the ranking is cut into three near-equal parts
    (``np.array_split``); head holds the most frequent classes.

    Returns:
        Dict mapping each group name to its sorted list of class indices.
    """
    ranking = np.argsort(-np.asarray(class_counts), kind="stable")
    return {name: sorted(part.tolist()) for name, part in zip(GROUPS, np.array_split(ranking, 3))}


def session_metrics(
    logits: torch.Tensor,
    targets: torch.Tensor,
    n_seen: int,
    label_mode: str,
    class_counts: list[int],
    threshold: float = 0.8,
    n_old: int = 0,
) -> dict:
    """Metrics after one session, over the first ``n_seen`` (seen) classes, of which the
    first ``n_old`` were learned before the session (old) and the rest in it (new).

    Args:
        logits: (N, C_total) raw model outputs.
        targets: (N, C_total) multi-hot float tensor for ``label_mode='multi'``,
            (N,) class indices for ``'single'``.
        n_seen: number of seen classes; classes are indexed in arrival order.
        label_mode: 'multi' or 'single'.
        class_counts: training images per class for all classes of the stream.
        threshold: decision threshold on sigmoid outputs (multi-label only).
        n_old: classes learned before this session.

    Returns:
        multi: ``mAP, CP, CR, CF1, OP, OR, OF1, head_mAP, medium_mAP,
        tail_mAP, old_mAP, new_mAP`` and ``per_class`` (AP per seen class);
        old / new mAP are the mean AP of the old / new classes.
        single: ``acc, head_acc, medium_acc, tail_acc, old_acc, new_acc`` and
        ``per_class`` (accuracy per seen class); old / new accuracy are over
        the test samples of old / new classes (predicting among all seen ones).
        Percent floats, None when undefined (old values in the first session).
    """
    logits = logits[:, :n_seen]
    if label_mode == "multi":
        result = _multi_label_metrics(logits, targets[:, :n_seen], class_counts, threshold)
        result["old_mAP"] = _mean(result["per_class"][:n_old])
        result["new_mAP"] = _mean(result["per_class"][n_old:])
        return result
    if label_mode == "single":
        result = _single_label_metrics(logits, targets, class_counts)
        correct = logits.argmax(dim=1) == targets
        old = targets < n_old
        result["old_acc"] = _to_float(100 * correct[old].double().mean())
        result["new_acc"] = _to_float(100 * correct[~old].double().mean())
        return result
    raise ValueError(f"unknown label_mode {label_mode!r}")


def summarize(sessions: list[dict], label_mode: str,
              final_on_earlier: Optional[list[list]] = None) -> dict:
    """Aggregate the per-session outputs of ``session_metrics`` over a stream.

    Returns ``avg_<m>`` (mean over all sessions, base session included),
    ``last_<m>`` and ``last_{head,medium,tail}_<m>`` with ``m`` = mAP for
    multi-label (plus ``last_CF1``, ``last_OF1``) or acc for single-label, and
    ``forgetting`` (see :func:`forgetting`; None for a single session).
    ``final_on_earlier[k]`` holds the final model's per-class values on session
    ``k``'s test images (:func:`per_class_on_subsets`); without it the final
    session's own values are used, which is the same thing for single-label
    accuracy (a class's test samples are the same in every session).
    """
    metric = "mAP" if label_mode == "multi" else "acc"
    last = sessions[-1]
    summary = {
        f"avg_{metric}": _mean([session[metric] for session in sessions]),
        f"last_{metric}": last[metric],
    }
    if label_mode == "multi":
        summary.update(last_CF1=last["CF1"], last_OF1=last["OF1"])
    summary.update({f"last_{group}_{metric}": last[f"{group}_{metric}"] for group in GROUPS})
    summary.update({f"last_{part}_{metric}": last.get(f"{part}_{metric}")
                    for part in ("old", "new")})
    summary["forgetting"] = forgetting([session["per_class"] for session in sessions],
                                       final_on_earlier)
    return summary


def per_class_on_subsets(logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
                         subsets: list[tuple[torch.Tensor, int]], label_mode: str,
                         n_final: int) -> list[list]:
    """Per-class values (AP or accuracy, percent) of one model, which has seen ``n_final``
    classes, on each subset of rows: ``subsets`` are (dataset indices, n_seen) pairs,
    ``index`` the dataset index of each scored row; each subset's list covers its first
    n_seen classes. Used to score the final model on each earlier session's test images, so
    that forgetting compares like with like. The model predicts among all its ``n_final``
    classes: an old image it now assigns to a newer class is an error."""
    values = []
    for rows, n_seen in subsets:
        keep = torch.isin(index, rows.to(index.device))
        values.append(session_metrics(logits[keep], targets[keep], n_final, label_mode,
                                      [0] * n_final)["per_class"][:n_seen])
    return values


class ScoreCollector(SupervisedPlugin):
    """Avalanche plugin computing ``session_metrics`` on each evaluated experience.

    Outputs and targets stay on the strategy's device until the end of the
    experience; the result is stored in ``self.last``, and the experience's scores,
    targets and dataset indices in ``self.scores``. Requires the strategy to expose
    ``n_seen`` and ``info.label_mode`` / ``info.class_counts``.
    """

    def __init__(self, threshold: float = 0.8):
        super().__init__()
        self.threshold = threshold
        self.last = None
        self.scores = None
        self._logits = []
        self._targets = []

    def before_eval_exp(self, strategy, *args, **kwargs):
        self._logits = []
        self._targets = []

    def after_eval_iteration(self, strategy, *args, **kwargs):
        self._logits.append(strategy.mb_output.detach())
        self._targets.append(strategy.mb_y)

    def after_eval_exp(self, strategy, *args, **kwargs):
        logits, targets = torch.cat(self._logits), torch.cat(self._targets)
        index = getattr(strategy.experience.dataset, "index", None)
        self.scores = (logits, targets, index)
        self.last = session_metrics(logits, targets, strategy.n_seen, strategy.info.label_mode,
                                    strategy.info.class_counts, self.threshold,
                                    getattr(strategy, "n_old", 0))


def _multi_label_metrics(logits, targets, class_counts, threshold):
    """``session_metrics`` for multi-label data already cut to seen classes. A row with no
    positive (e.g. a COCO image whose only objects of seen classes are crowd annotations)
    counts as a negative for every class, as in the reference evaluation."""
    per_class = _to_list(100 * average_precision(logits, targets))
    return {
        "mAP": _mean(per_class),
        **f1_scores(logits.sigmoid(), targets, threshold),
        **_group_means(per_class, class_counts, "mAP"),
        "per_class": per_class,
    }


def _single_label_metrics(logits, targets, class_counts):
    """``session_metrics`` for single-label data, logits cut to seen classes."""
    n_seen = logits.shape[1]
    correct = logits.argmax(dim=1) == targets
    hits = torch.bincount(targets[correct], minlength=n_seen).double()
    totals = torch.bincount(targets, minlength=n_seen).double()
    per_class = _to_list(100 * hits / torch.where(totals > 0, totals, torch.nan))
    return {
        "acc": _to_float(100 * correct.double().mean()),
        **_group_means(per_class, class_counts, "acc"),
        "per_class": per_class,
    }


def _group_means(per_class, class_counts, metric):
    """Mean of ``per_class`` over the seen classes of each frequency group."""
    n_seen = len(per_class)
    return {
        f"{group}_{metric}": _mean([per_class[c] for c in classes if c < n_seen])
        for group, classes in frequency_groups(class_counts).items()
    }


def forgetting(per_class_history: list[list], final_on_earlier: Optional[list[list]] = None):
    """Average forgetting over classes seen before the final session.

    For each such class c: the largest drop, over earlier sessions k, from its value after
    session k to the final model's value **on the same test images** (session k's test set,
    ``final_on_earlier[k]``). Each multi-label session's test set adds the images of its new
    classes, and AP falls with added negatives even for a model that forgot nothing, so
    values from two different test sets are not comparable. Without ``final_on_earlier``
    the final session's own values stand for every k. Undefined (None) values are skipped;
    None with fewer than two sessions.
    """
    if len(per_class_history) < 2:
        return None
    *earlier, final = per_class_history
    finals = final_on_earlier or [final] * len(earlier)
    drops = []
    for c in range(len(earlier[-1])):
        drop = _max([values[c] - ends[c] for values, ends in zip(earlier, finals)
                     if c < len(values) and values[c] is not None and ends[c] is not None])
        if drop is not None:
            drops.append(drop)
    return _mean(drops)


def _ratio(numerator, denominator):
    """Elementwise ratio of counts, 0 where the denominator is 0."""
    return numerator / denominator.clamp(min=1)


def _mean(values):
    """Mean of the non-None values, None if there are none."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _max(values):
    """Max of the non-None values, None if there are none."""
    defined = [v for v in values if v is not None]
    return max(defined) if defined else None


def _to_float(value):
    """Scalar tensor to python float, NaN to None."""
    value = value.item()
    return None if math.isnan(value) else value


def _to_list(values):
    """1-D tensor to a list of python floats, NaN to None."""
    return [None if math.isnan(v) else v for v in values.tolist()]
