"""Gradient reweighting with distribution-aware KD (He & Zhu, CVPR 2024, arXiv:2402.18528;
official code JiangpengHe/imbalanced_cil ``src/approach/DGR.py``); the mechanism and its
equations are in strategies/gradreweight.py.

Replay with the recipe's memory (the paper: 20 exemplars per class, herding), the
logit-adjusted loss (balanced softmax; balanced sigmoid on multi-label streams, ours),
class-balanced reweighting of the classifier's gradient rows and distribution-aware KD
(lambda_b = ``kd_weight`` = 0.7, T = ``temperature`` = 2, the official values).
The official code trains on 90% of each session's data and keeps the last epoch's model
(its 10% hold-out only reports a validation loss): the stream option ``?valid=0.1`` gives the
same hold-out here. ``negatives`` (multi-label): which unlabelled entries the balanced
sigmoid supervises, as for ``replay``. ``adjust``, ``reweight`` and ``kd`` switch the
method's parts off for ablations (configs/gradreweight-ablation.yaml).
"""
from strategies.options import NEGATIVES

from ._registry import register


@register("gradreweight", label_modes={"multi", "single"}, paper="arXiv:2402.18528",
          defaults={"kd_weight": 0.7, "temperature": 2.0, "negatives": "labelled",
                    "adjust": True, "reweight": True, "kd": "dakd"},
          choices={"negatives": NEGATIVES, "kd": ("dakd", "plain")},
          ranges={"kd_weight": (0.0, None), "temperature": (0.01, None)},
          space={"kd_weight": ("log", 0.1, 10.0), "temperature": ("float", 1.0, 4.0)})
def build(ctx):
    """Gradient reweighting: class-balanced classifier gradients, distribution-aware KD."""
    from strategies.gradreweight import GradientReweighting

    h = ctx.hparams
    method = GradientReweighting(ctx.info.label_mode, h["kd_weight"], h["temperature"],
                                 h["adjust"], h["reweight"], h["kd"])
    return ctx.template(criterion=method, plugins=[method, ctx.memory()],
                        negatives=ctx.hparams["negatives"])
