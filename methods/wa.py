"""Weight aligning (Zhao et al., "Maintaining Discrimination and Fairness in Class
Incremental Learning", CVPR 2020, arXiv:1911.07053), as PyCIL's ``models/wa.py``:

- replay with the recipe's memory (herding by default);
- loss ``(1 - lambda) CE + lambda L_kd`` over the seen classes, ``lambda = n_old / n_seen``,
  L_kd the soft cross-entropy to the previous model's old-class softmax at T =
  ``temperature`` = 2 (Eq. 2-4; strategies/distillation.py ``ProportionalKD``);
- after each session but the first, the new classes' classifier rows are scaled by
  ``gamma = mean ||w_old|| / mean ||w_new||`` (Eq. 6-8; strategies/weight_aligning.py).

Departures: the paper also clips the classifier weights to be non-negative after each step
("weight clipping"); PyCIL does not, nor does the suite. PyCIL's optimiser schedule (SGD,
lr 0.1, 170 epochs) is the stream recipe's here, as for every method.
Multi-label (ours): the same alignment on the sigmoid head; L_kd is each old class's
sigmoid distillation (BCE to the previous model's probability), as ``lwf`` does.
"""
from ._registry import register


@register("wa", label_modes={"multi", "single"}, paper="arXiv:1911.07053",
          defaults={"temperature": 2.0}, ranges={"temperature": (0.01, None)})
def build(ctx):
    """WA: replay, n_old/n_seen-weighted distillation, new-class weights aligned to old norms."""
    from strategies.distillation import ProportionalKD
    from strategies.weight_aligning import WeightAligning

    return ctx.template(plugins=[ProportionalKD(ctx.hparams["temperature"]),
                                 WeightAligning(), ctx.memory()])
