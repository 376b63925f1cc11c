"""RebLL (Du et al., "Rebalancing Multi-Label Class-Incremental Learning", AAAI 2025,
arXiv:2408.12161), multi-label only: a reconstruction from the paper's description (no
released code, no exact equations); the formulas are in strategies/rebll.py.

Replay on the memory of the recipe, trained with AKD (the asymmetric loss over the
supervised entries, plus ``mu`` times the decay-weighted distillation on old classes) and
with OR (the missing label blocks of memory rows, or of all rows, filled by the current and
the previous model). Hyperparameters, each an unknown of the paper made a choice:

- ``gamma_pos``, ``gamma_neg``, ``neg_weight``, ``clip``: the classification part;
  ``negatives``: which unlabelled entries are negatives (``seen`` | ``session`` |
  ``labelled``; ``labelled`` leaves every unlabelled entry unknown, so that the negatives
  of other sessions' classes come only from OR's filled labels, the setting where OR
  restores missing negatives; under ``seen`` they are negatives already and OR can only
  turn some into positives);
- ``lambda``, ``lambda_mode`` (``fixed`` | ``adaptive``), ``mu``, ``kd_weight``
  (``symmetric`` | ``negative`` | ``positive``: the decay ``exp(-lambda |2q-1|)``,
  ``exp(-lambda q)`` or ``exp(-lambda (1-q))``, see strategies/rebll.py): the distillation
  part;
- ``akd``: False replaces both AKD parts by their symmetric forms (BCE, i.e. gammas, clip
  0 and neg_weight 1, and plain sigmoid distillation, lambda 0), at the same ``mu``: the
  ablation "without AKD";
- ``or_mode`` (``online`` | ``end_of_session`` | ``off``), ``or_scope`` (``memory`` |
  ``all``), ``or_labels`` (``hard`` | ``soft``), ``tau`` (threshold of hard labels).

Defaults chosen on digits:B0-C2?valid=0.1&eval=valid (docs/methods/rebll.md). Plain ASL replay
(the KRT-style baseline) is ``gamma_neg=4 gamma_pos=0 clip=0.05 neg_weight=1 mu=0
or_mode=off``.
"""
from functools import partial

from strategies.options import (KD_WEIGHTS, LAMBDA_MODES, NEGATIVES, OR_LABELS, OR_MODES,
                                OR_SCOPES)

from ._registry import register

DEFAULTS = {"gamma_pos": 2.0, "gamma_neg": 0.0, "neg_weight": 1.0, "clip": 0.05,
            "negatives": "seen", "lambda": 1.0, "lambda_mode": "fixed",
            "kd_weight": "symmetric", "mu": 1.0, "akd": True, "or_mode": "online",
            "or_scope": "memory", "or_labels": "hard", "tau": 0.7}


@register("rebll", label_modes={"multi"}, paper="arXiv:2408.12161", defaults=DEFAULTS,
          choices={"negatives": NEGATIVES, "lambda_mode": LAMBDA_MODES,
                   "kd_weight": KD_WEIGHTS, "or_mode": OR_MODES, "or_scope": OR_SCOPES,
                   "or_labels": OR_LABELS},
          ranges={"gamma_pos": (0.0, None), "gamma_neg": (0.0, None), "neg_weight": (0.0, None),
                  "clip": (0.0, 1.0), "lambda": (0.0, None), "mu": (0.0, None),
                  "tau": (0.0, 1.0)},
          space={"gamma_pos": ("float", 0.0, 4.0), "tau": ("float", 0.5, 0.95),
                 "lambda": ("log", 0.1, 10.0), "mu": ("log", 0.1, 10.0)})
def build(ctx):
    """RebLL (reconstruction): replay with asymmetric KD and online relabeling."""
    from strategies.losses import asymmetric_loss
    from strategies.rebll import AKDPlugin, RelabelPlugin

    h = ctx.hparams
    if h["akd"]:
        cls = dict(gamma_pos=h["gamma_pos"], gamma_neg=h["gamma_neg"], clip=h["clip"],
                   neg_weight=h["neg_weight"])
        lam = h["lambda"]
    else:
        cls, lam = dict(gamma_pos=0.0, gamma_neg=0.0, clip=0.0, neg_weight=1.0), 0.0
    memory = ctx.memory()
    relabeling = RelabelPlugin(h["or_mode"], h["or_scope"], h["or_labels"] == "soft", h["tau"],
                               memory.memory)
    akd = AKDPlugin(h["mu"], lam, h["lambda_mode"] == "adaptive", h["kd_weight"])
    # the memory plugin first: end-of-session relabeling reads the updated memory
    return ctx.template(criterion=partial(asymmetric_loss, **cls),
                        plugins=[memory, relabeling, akd], negatives=h["negatives"])
