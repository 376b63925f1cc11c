"""Learning without Forgetting (Li & Hoiem, ECCV 2016): distillation from the previous
session's model on old classes; see strategies/distillation.py for the multi-label form."""
from strategies.distillation import LwFPlugin

from ._registry import register


@register("lwf", label_modes={"multi", "single"}, paper="arXiv:1606.09282",
          defaults={"alpha": 1.0, "temperature": 2.0})
def build(ctx):
    """LwF: alpha * distillation to the previous model on old classes."""
    return ctx.template(plugins=[LwFPlugin(ctx.hparams["alpha"], ctx.hparams["temperature"])])
