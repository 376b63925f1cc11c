"""Fine-tuning: trains each session on its own data only (the lower bound)."""
from ._registry import register


@register("finetune", label_modes={"multi", "single"})
def build(ctx):
    """Fine-tuning: each session on its own data, no memory, no distillation."""
    return ctx.template()
