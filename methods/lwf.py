"""Learning without Forgetting (Li & Hoiem, ECCV 2016): distillation from the previous
session's model on old classes; see strategies/distillation.py for the multi-label form."""
from ._registry import register


@register("lwf", label_modes={"multi", "single"}, paper="arXiv:1606.09282",
          defaults={"alpha": 1.0, "temperature": 2.0},
          ranges={"alpha": (0.0, None), "temperature": (0.01, None)},
          space={"alpha": ("log", 0.1, 10.0), "temperature": ("float", 1.0, 4.0)})
def build(ctx):
    """LwF: alpha * distillation to the previous model on old classes."""
    from strategies.distillation import LwFPlugin

    return ctx.template(plugins=[LwFPlugin(ctx.hparams["alpha"], ctx.hparams["temperature"])])
