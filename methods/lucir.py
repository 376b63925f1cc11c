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
- ``two_stage=true`` (Liu et al., "Long-Tailed Class Incremental Learning", ECCV 2022,
  arXiv:2210.00266, the reference's ``lucir_2stage.py``): after each session, a learnable
  per-class weight scaling and the new classes' cosine rows (and sigma) trained on
  class-balanced batches of frozen features (``stage2_epochs`` = 30, ``stage2_lr`` = 0.1;
  strategies/weight_scaling.py), the scales applied to the test logits; its time is
  ``lws_fit_s`` in the session's notes.
- ``loss=bsce``: the cross-entropy on the scaled cosines becomes the balanced softmax
  (Jodelet et al., arXiv:2103.12532, Eq. 3: CE on ``z_c + log n_c``, the current training
  set's counts, memory included; strategies/balanced.py), raw logits at test. That paper
  combines BSCE with existing incremental methods; which ones could not be established
  here (its experiments section was not available), so the switch is on LUCIR only.

Departures: the reference removes the backbone's last ReLU (ResNet only) so features may be
negative; the suite keeps the backbone as built (its features are non-negative). The
official code's weight imprinting of new rows and its class-balanced fine-tuning are not in
the long-tailed CIL code, nor here. ``K`` is capped at the session's number of new classes.
The ablation switches (no less-forget, no margin ranking, fixed lambda) are not exposed.
The reference's lr schedule is the stream recipe's here, as for every method; in
``lucir_2stage.py`` lamb is 10 when the run has 90 epochs (ImageNet), else 5 (the default
here either way), and a session with at most 10 samples per class skips stage 1 (not here).
Single-label only: the margin ranking ranks an old sample's ground truth above the new
classes' highest cosines, which on a multi-label stream may be true (unlabelled, partial)
positives of the same image; it has no multi-label form in the papers.
"""
from strategies.options import LOSSES

from ._registry import register


@register("lucir", label_modes={"single"}, paper="Hou et al., CVPR 2019",
          defaults={"lamb": 5.0, "lamb_mr": 1.0, "margin": 0.5, "K": 2,
                    "two_stage": False, "stage2_epochs": 30, "stage2_lr": 0.1, "loss": "ce"},
          choices={"loss": LOSSES},
          ranges={"lamb": (0.0, None), "lamb_mr": (0.0, None), "margin": (0.0, 2.0),
                  "K": (1, None), "stage2_epochs": (1, None), "stage2_lr": (1e-6, 10.0)},
          space={"lamb": ("log", 1.0, 20.0)})
def build(ctx):
    """LUCIR: cosine classifier, less-forget constraint, margin ranking, replay (single-label only: the margin ranking has no multi-label form)."""
    import torch

    from strategies.bsce import BalancedPrior
    from strategies.lucir import CosineHead, LUCIRPlugin
    from strategies.weight_scaling import WeightScaling

    h = ctx.hparams
    ctx.model.head = CosineHead.replacing(ctx.model.head)
    plugins = [LUCIRPlugin(h["lamb"], h["lamb_mr"], h["margin"], h["K"]), ctx.memory()]
    if h["two_stage"]:
        plugins.insert(1, WeightScaling(ctx.info.num_classes, h["stage2_epochs"],
                                        h["stage2_lr"], ctx.train["weight_decay"],
                                        torch.Generator().manual_seed(ctx.seed)))
    criterion = None
    if h["loss"] == "bsce":
        criterion = BalancedPrior(ctx.info.label_mode)
        plugins.insert(0, criterion)
    return ctx.template(criterion=criterion, plugins=plugins)
