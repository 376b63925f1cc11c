"""Joint training: each session on all data seen so far with full labels (upper bound)."""
from ._registry import register


@register("joint", label_modes={"multi", "single"})
def build(ctx):
    """Joint training on all data seen so far, full labels over seen classes (upper bound)."""
    from strategies.joint import CumulativeDataPlugin

    return ctx.template(plugins=[CumulativeDataPlugin(ctx.benchmark.joint_stream)])
