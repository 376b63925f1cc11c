"""Balanced softmax cross-entropy for class-incremental learning (Jodelet, Liu & Murata,
arXiv:2103.12532, ICANN 2021 / CVIU 2022), the loss being the Balanced Softmax of Ren et
al. (NeurIPS 2020, Eq. 4).

- Training loss (single-label, the paper's Eq. 3): cross-entropy on ``z_c + log n_c`` over
  the seen classes, ``n_c`` the samples of class c in the current training set (the
  session's data plus the memory exemplars); predictions at test use the raw logits ``z``.
- Combined with replay (the recipe's memory, ``--memory``) and distillation, as the paper
  combines it with iCaRL-style methods: ``kd = logits`` (default) adds
  ``kd_weight * T^2 KL(softmax(z_prev / T) || softmax(z / T))`` over the old classes'
  logits (T = ``temperature`` = 2, strategies/distillation.py); ``kd = none`` drops it.
- Without memory (``--memory 0``) an old class has no sample in the current set, so its
  ``log n_c`` would be -inf: it keeps its last known count instead, the count of the session
  it was learned in (strategies/bsce.py). This choice is ours (issue 13), not the paper's.
- Multi-label (our extension): the balanced sigmoid, binary cross-entropy on
  ``z_c + log(n+_c / n-_c)`` over the supervised entries, with ``n+``/``n-`` the supervised
  positives/negatives of class c in the current training set, memory included (which
  entries are supervised: ``negatives``, as for ``replay``); raw logits at test; ``kd =
  logits`` distils each old class's sigmoid (BCE to the previous model's probability), as
  ``lwf`` does on multi-label streams.
"""
from strategies.options import NEGATIVES

from ._registry import register


@register("bsce", label_modes={"multi", "single"}, paper="arXiv:2103.12532",
          defaults={"kd": "logits", "kd_weight": 1.0, "temperature": 2.0,
                    "negatives": "labelled"},
          choices={"kd": ("none", "logits"), "negatives": NEGATIVES},
          ranges={"kd_weight": (0.0, None), "temperature": (0.01, None)},
          space={"kd_weight": ("log", 0.1, 10.0), "temperature": ("float", 1.0, 4.0)})
def build(ctx):
    """BSCE: replay with the balanced softmax (sigmoid) loss and logit distillation."""
    from strategies.bsce import BalancedPrior
    from strategies.distillation import LwFPlugin

    balanced = BalancedPrior(ctx.info.label_mode)
    plugins = [balanced, ctx.memory()]
    if ctx.hparams["kd"] == "logits":
        plugins.append(LwFPlugin(ctx.hparams["kd_weight"], ctx.hparams["temperature"]))
    return ctx.template(criterion=balanced, plugins=plugins, negatives=ctx.hparams["negatives"])
