"""LUCIR (Hou et al., "Learning a Unified Classifier Incrementally via Rebalancing", CVPR
2019), as the long-tailed CIL code (xialeiliu/Long-Tailed-CIL ``src/approach/lucir.py``,
FACIL's LUCIR; official code hshustc/CVPR19_Incremental_Learning); the mechanisms are in
strategies/lucir.py:

- the model's linear head becomes a cosine-normalised classifier with a learnable scale
  sigma (Eq. 4), swapped in before training starts; the backbone, its features (herding)
  and evaluation are unchanged (the test logits are ``sigma * cos``);
- replay with the recipe's memory (herding by default);
- loss (Eq. 9): cross-entropy on the scaled cosines + ``lambda * L_dis^G`` (less-forget
  constraint, Eq. 6, with ``lambda = lamb * sqrt(n_old / n_new)``, Eq. 7; ``lamb`` = 5, the
  CIFAR value) + ``lamb_mr * L_mr`` (margin ranking, Eq. 8, ``margin`` = 0.5, ``K`` = 2);
  the old classes' classifier rows frozen after the first session.

Departures: the reference removes the backbone's last ReLU (ResNet only) so features may be
negative; the suite keeps the backbone as built (its features are non-negative). The
official code's weight imprinting of new rows and its class-balanced fine-tuning are not in
the long-tailed CIL code, nor here. ``K`` is capped at the session's number of new classes.
The ablation switches (no less-forget, no margin ranking, fixed lambda) are not exposed.
The reference's lr schedule is the stream recipe's here, as for every method.
Single-label only: the margin ranking ranks an old sample's ground truth above the new
classes' highest cosines, which on a multi-label stream may be true (unlabelled, partial)
positives of the same image; it has no multi-label form in the papers.
"""
from ._registry import register


@register("lucir", label_modes={"single"}, paper="Hou et al., CVPR 2019",
          defaults={"lamb": 5.0, "lamb_mr": 1.0, "margin": 0.5, "K": 2},
          ranges={"lamb": (0.0, None), "lamb_mr": (0.0, None), "margin": (0.0, 2.0),
                  "K": (1, None)},
          space={"lamb": ("log", 1.0, 20.0)})
def build(ctx):
    """LUCIR: cosine classifier, less-forget constraint, margin ranking, replay (single-label only: the margin ranking has no multi-label form)."""
    from strategies.lucir import CosineHead, LUCIRPlugin

    h = ctx.hparams
    ctx.model.head = CosineHead.replacing(ctx.model.head)
    plugins = [LUCIRPlugin(h["lamb"], h["lamb_mr"], h["margin"], h["K"]), ctx.memory()]
    return ctx.template(plugins=plugins)
