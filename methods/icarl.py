"""iCaRL (Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR
2017, arXiv:1611.07725), as the long-tailed CIL code (xialeiliu/Long-Tailed-CIL
``src/approach/icarl.py``, FACIL's iCaRL):

- replay with the recipe's memory (herding, Alg. 4-5, by default: ``--memory-selection``);
- loss: cross-entropy over the seen classes plus ``lamb`` (= 1) times the sum over old
  classes of the binary cross-entropy between the model's sigmoid and the previous model's
  (Alg. 3 as that code writes it: softmax CE for the new labels, sigmoid distillation);
- prediction by the nearest mean of exemplars (Alg. 1; strategies/nme.py), the means of
  the normalised features of the memory after each session.

Departures: PyCIL's iCaRL distils with softmax KD at T = 2 and adds horizontally flipped
exemplars to the means; the suite follows the long-tailed CIL code (no flips). The
reference's lr patience schedule is the stream recipe's here, as for every method.
Single-label only: the NME classifier has no multi-label form (see strategies/nme.py).
"""
from ._registry import register


@register("icarl", label_modes={"single"}, paper="arXiv:1611.07725",
          defaults={"lamb": 1.0}, ranges={"lamb": (0.0, None)},
          space={"lamb": ("log", 0.1, 10.0)})
def build(ctx):
    """iCaRL: replay, sigmoid distillation, nearest-mean-of-exemplars prediction (single-label only: NME has no multi-label form)."""
    from strategies.distillation import SummedSigmoidKD
    from strategies.nme import NMEClassifier

    memory = ctx.memory()
    return ctx.template(plugins=[SummedSigmoidKD(ctx.hparams["lamb"]), memory,
                                 NMEClassifier(memory.memory)])
