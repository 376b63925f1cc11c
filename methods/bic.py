"""BiC, bias correction (Wu et al., "Large Scale Incremental Learning", CVPR 2019,
arXiv:1905.13260), as the long-tailed CIL code (xialeiliu/Long-Tailed-CIL
``src/approach/bic.py``) and PyCIL (``models/bic.py``); the mechanism and its departures are
in strategies/bias_correction.py.

- Stage 1: replay with the recipe's memory less the validation share, loss ``(1 - lambda)
  CE + lambda L_kd`` with ``lambda = n_old / n_seen`` and L_kd the soft cross-entropy to
  the previous model's old-class softmax at T = ``temperature`` = 2 (Eq. 1-3), both
  models' logits passing through the bias layers, as in both codes.
- Stage 2 (sessions after the first): the new session's bias layer fitted on a balanced
  held-out set, ``val_share`` = 0.1 of the memory's per-class quota per class, for
  ``bias_epochs`` = 200 epochs at ``bias_lr`` = 0.1 (SGD, momentum 0.9; both codes use the
  training lr, 0.1 on CIFAR-100; here it is its own knob since the stream recipe may use
  Adam), with FACIL's ``0.1 * beta^2 / 2`` penalty.

Departures: FACIL smooths the distillation's softmax by 1e-5 (``eps``), PyCIL and the suite
do not; PyCIL's stage 2 applies a softmax before the cross-entropy, FACIL (followed here)
does not. Multi-label (ours): the per-session affine correction of logits fitted by the
masked binary cross-entropy on the held-out set; L_kd is each old class's sigmoid
distillation.
"""
from ._registry import register


@register("bic", label_modes={"multi", "single"}, paper="arXiv:1905.13260",
          defaults={"temperature": 2.0, "val_share": 0.1, "bias_epochs": 200, "bias_lr": 0.1},
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
                                torch.Generator().manual_seed(ctx.seed))
    return ctx.template(plugins=[ProportionalKD(h["temperature"]), correction, memory])
