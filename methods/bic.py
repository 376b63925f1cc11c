"""BiC, bias correction (Wu et al., "Large Scale Incremental Learning", CVPR 2019,
arXiv:1905.13260), as the long-tailed CIL code (xialeiliu/Long-Tailed-CIL
``src/approach/bic.py``) and PyCIL (``models/bic.py``); the mechanism and its departures are
in strategies/bias_correction.py.

- Stage 1: replay with the recipe's memory less the validation share, loss ``(1 - lambda)
  CE + lambda L_kd`` with ``lambda = n_old / n_seen`` and L_kd the soft cross-entropy to
  the previous model's old-class softmax at T = ``temperature`` = 2 (Eq. 1-3).
- Stage 2 (sessions after the first): the new session's bias layer fitted on a balanced
  held-out set, ``val_share`` = 0.1 of the memory's per-class quota per class, for
  ``bias_epochs`` = 200 epochs at ``bias_lr`` = 0.1 (SGD, momentum 0.9; both codes use the
  training lr, 0.1 on CIFAR-100; here it is its own knob since the stream recipe may use
  Adam), with FACIL's ``0.1 * beta^2 / 2`` penalty.
- ``bias_layers``: ``latest`` (default) applies only the newest session's bias layer, as the
  original code does (wuyuebupt/LargeScaleIncrementalLearning ``resnet.py``: at test the old
  classes' logits are raw and only the last session's classes pass through the last fitted
  ``(beta, gamma)``; in training the model's logits are raw and the previous model's carry
  its own session's layer; stage 2 fits on raw logits) and Avalanche's ``BiCPlugin``;
  ``all`` keeps every session's fitted layer applied to its classes for good, in training,
  at test and in the previous model, as FACIL / LT-CIL and PyCIL do (the suite's only
  behaviour before issue 31; with few held-out samples per class an overshooting early fit
  then stays applied, see docs/crosscheck.md).

Departures: FACIL smooths the distillation's softmax by 1e-5 (``eps``), PyCIL and the suite
do not; PyCIL's stage 2 applies a softmax before the cross-entropy, FACIL (followed here)
does not. Multi-label (ours): the per-session affine correction of logits fitted by the
masked binary cross-entropy on the held-out set; L_kd is each old class's sigmoid
distillation.
"""
from strategies.options import BIAS_LAYERS

from ._registry import register


@register("bic", label_modes={"multi", "single"}, paper="arXiv:1905.13260",
          defaults={"temperature": 2.0, "val_share": 0.1, "bias_epochs": 200, "bias_lr": 0.1,
                    "bias_layers": "latest"},
          choices={"bias_layers": BIAS_LAYERS},
          ranges={"temperature": (0.01, None), "val_share": (0.01, 0.5),
                  "bias_epochs": (1, None), "bias_lr": (1e-6, 10.0)})
def build(ctx):
    """BiC: replay with n_old/n_seen-weighted distillation, a bias layer fitted per session."""
    import torch

    from strategies.bias_correction import BiasCorrectedHead, BiasCorrection
    from strategies.distillation import ProportionalKD

    h = ctx.hparams
    ctx.model.head = BiasCorrectedHead(ctx.model.head)
    memory = ctx.memory()
    correction = BiasCorrection(memory.memory, h["val_share"], h["bias_epochs"], h["bias_lr"],
                                torch.Generator().manual_seed(ctx.seed), h["bias_layers"])
    return ctx.template(plugins=[ProportionalKD(h["temperature"]), correction, memory])
