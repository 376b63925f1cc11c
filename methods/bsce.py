"""Balanced softmax cross-entropy for class-incremental learning (Jodelet, Liu & Murata,
arXiv:2103.12532, ICANN 2021 / CVIU 2022), the loss being the Balanced Softmax of Ren et
al. (NeurIPS 2020, Eq. 4). Ren et al. introduced it against the long tail of a dataset;
Jodelet et al.'s use, the one this method follows, is against the old/new class imbalance
of class-incremental learning (a few memory exemplars of each old class against all the
images of the new ones): the balanced softmax replaces the balancing stage that existing
incremental methods add after or around training (a bias-correction or class-balanced
fine-tuning step), inside those methods, distillation included.

- Training loss (single-label, the paper's Eq. 3): cross-entropy on ``z_c + log n_c`` over
  the seen classes, ``n_c`` the samples of class c in the current training set (the
  session's data plus the memory exemplars); predictions at test use the raw logits ``z``.
- The recipe here: replay (the recipe's memory, ``--memory``) and logit distillation:
  ``kd = logits`` (default) adds ``kd_weight * T^2 KL(softmax(z_prev / T) ||
  softmax(z / T))`` over the old classes' logits (T = ``temperature`` = 2,
  strategies/distillation.py); ``kd = none`` drops it.
- ``absent``: the prior of a seen class with no sample in the current set (an old class
  without memory, ``--memory 0``), whose ``log n_c`` would be -inf: ``exclude`` (default,
  chosen on the validation split: results/sweeps/bsce-absent) takes the balanced softmax's
  limit, the class out of the classification loss; ``last`` (issue 13) keeps its last known
  count (strategies/bsce.py gives the reasoning; ours, not the
  paper's).
- Multi-label (our extension): the balanced sigmoid, binary cross-entropy on
  ``z_c + log(n+_c / n-_c)`` over the supervised entries (which entries are supervised:
  ``negatives``, as for ``replay``); raw logits at test; ``kd = logits`` distils each old
  class's sigmoid (BCE to the previous model's probability), as ``lwf`` does on multi-label
  streams. ``prior``: where ``n+``/``n-`` come from, ``supervised`` (the
  supervised positives/negatives of the current training set, memory included),
  ``session`` (default, chosen on the validation split: results/sweeps/bsce-prior;
  positives over all of the current set's images, unlabelled entries counted as negatives
  for the prior only) or ``stream`` (the stream's own class frequencies); see
  strategies/bsce.py for why the default barely separates old from new classes under
  ``negatives=labelled``. Single-label: ``session`` is ``supervised``, ``stream`` uses the
  stream's class counts.
"""
from strategies.options import BSCE_ABSENT, BSCE_PRIORS, NEGATIVES

from ._registry import register


@register("bsce", label_modes={"multi", "single"}, paper="arXiv:2103.12532",
          defaults={"kd": "logits", "kd_weight": 1.0, "temperature": 2.0,
                    "negatives": "labelled", "prior": "session", "absent": "exclude"},
          choices={"kd": ("none", "logits"), "negatives": NEGATIVES, "prior": BSCE_PRIORS,
                   "absent": BSCE_ABSENT},
          ranges={"kd_weight": (0.0, None), "temperature": (0.01, None)},
          space={"kd_weight": ("log", 0.1, 10.0), "temperature": ("float", 1.0, 4.0)})
def build(ctx):
    """BSCE: replay with the balanced softmax (sigmoid) loss and logit distillation."""
    from strategies.bsce import BalancedPrior, stream_images
    from strategies.distillation import LwFPlugin

    h = ctx.hparams
    images = (stream_images(ctx.benchmark)
              if h["prior"] == "stream" and ctx.info.label_mode == "multi" else None)
    balanced = BalancedPrior(ctx.info.label_mode, h["prior"], h["absent"],
                             ctx.info.class_counts, images)
    plugins = [balanced, ctx.memory()]
    if h["kd"] == "logits":
        plugins.append(LwFPlugin(h["kd_weight"], h["temperature"]))
    return ctx.template(criterion=balanced, plugins=plugins, negatives=h["negatives"])
