"""Experience replay (Rolnick et al., NeurIPS 2019; Chaudhry et al., arXiv:1902.10486): the
memory (size, budget mode and selection from the recipe, e.g. ``--memory 20``) joins every
session's training data, with its samples' own partial labels, as the rehearsal baseline of
the MLCIL papers (KRT, RebLL) does."""
from ._registry import register


@register("replay", label_modes={"multi", "single"})
def build(ctx):
    """Experience replay on a multi-label-aware memory."""
    return ctx.template(plugins=[ctx.memory()])
