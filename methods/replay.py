"""Experience replay (Rolnick et al., NeurIPS 2019; Chaudhry et al., arXiv:1902.10486): the
memory (size, budget mode and selection from the recipe, e.g. ``--memory 20``) joins every
session's training data, with its samples' own partial labels, as the rehearsal baseline of
the MLCIL papers (KRT, RebLL) does.

``negatives`` (multi-label): ``labelled`` (default) trains on the labelled entries only;
``seen`` treats every seen class not labelled positive as a negative, which is the replay
baseline of the MLCIL papers (KRT lineage)."""
from strategies.options import NEGATIVES

from ._registry import register


@register("replay", label_modes={"multi", "single"}, paper="arXiv:1902.10486",
          defaults={"negatives": "labelled"}, choices={"negatives": NEGATIVES})
def build(ctx):
    """Experience replay on a multi-label-aware memory."""
    return ctx.template(plugins=[ctx.memory()], negatives=ctx.hparams["negatives"])
