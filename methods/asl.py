"""The asymmetric loss (ASL; Ridnik et al., ICCV 2021) as a method: the template trained by
ASL (strategies/losses.py) instead of binary cross-entropy, with the recipe's replay memory.

It is the baseline of parallel self-distillation (``psd``): the same model trained by ASL
alone for the same epochs. On the one-session protocol (``digits:B10``, ``coco:B80``) the
memory has nothing to replay and this is plain ASL training, the comparison PSD's claim is
about; incrementally it is replay trained by ASL, which is ``psd`` without its teachers and
its LwF term (``--memory 0`` drops the memory from both).

``focal_grad``: ``detached`` (default) treats ASL's focusing weights as constants in the
backward pass, as the official training scripts of ASL and of PSD do
(``disable_torch_grad_focal_loss=True``); ``full`` keeps their gradient (the loss as written,
this suite's behaviour before). Same loss value, about 2.4x more gradient on negatives with
``full`` (strategies/losses.py).
"""
from functools import partial

from strategies.options import FOCAL_GRADS, NEGATIVES

from ._registry import register

ASL_DEFAULTS = {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05, "negatives": "labelled",
                "focal_grad": "detached"}
ASL_CHOICES = {"negatives": NEGATIVES, "focal_grad": FOCAL_GRADS}
ASL_RANGES = {"gamma_neg": (0.0, None), "gamma_pos": (0.0, None), "clip": (0.0, 1.0)}
ASL_SPACE = {"gamma_neg": ("float", 0.0, 6.0), "clip": ("float", 0.0, 0.2)}


@register("asl", label_modes={"multi"}, paper="arXiv:2009.14119", defaults=ASL_DEFAULTS,
          choices=ASL_CHOICES, ranges=ASL_RANGES, space=ASL_SPACE)
def build(ctx):
    """The asymmetric loss with the recipe's replay memory (plain ASL on one session)."""
    from strategies.losses import asymmetric_loss

    h = ctx.hparams
    loss = partial(asymmetric_loss, gamma_neg=h["gamma_neg"], gamma_pos=h["gamma_pos"],
                   clip=h["clip"], focal_grad=h["focal_grad"])
    return ctx.template(criterion=loss, plugins=[ctx.memory()], negatives=h["negatives"])
