"""KRT (Dong et al., "Knowledge Restore and Transfer for Multi-Label Class-Incremental
Learning", ICCV 2023, arXiv:2302.13334; official code witdsl/KRT-MLCIL), multi-label only:
the dynamic pseudo-label module (DPL, knowledge restore), the incremental cross-attention
module (ICA: session-specific knowledge-retention tokens and a shared knowledge-transfer
token over the backbone's feature map, per-session heads) and its token loss, with replay.
The equations, as the official ``MultiLabelIncremental_KRT.py`` and ``tresnet_l_ica.py``
compute them, are in strategies/krt.py.

The loss of session t: ``L = sum_entries ASL(z, y~) + lambda_tdl * sqrt(n_seen / n_new) *
mean_b (1 - cos(E'_b, E_b))``, y~ the targets with DPL's pseudo-positives on old classes,
E' and E the previous and current models' old-session tokens, concatenated.

Defaults as the official VOC KRT config (``configs/multi_tresnetm_krt_voc.yaml``; the COCO
one did not survive in the release) and code: ``restore=dynamic`` from ``thre`` = 0.8
(the code's ``dynamic`` defaults to True), ``lambda_tdl`` = 80 (the official
``lambda_f_TDL``; the config's comment: 80 for B0-CX protocols, 300 for B40-CX), ASL with
gamma_neg 4, gamma_pos 0, clip 0.05, focusing weights detached
(``disable_torch_grad_focal_loss=True``), every seen class not labelled positive a negative
(``negatives=seen``: the 0s of the official label vectors), ``reduction=sum`` (the official
loss sums over entries; ``mean`` divides it by their number, and then the token loss weighs
B * n_seen times more), ``freeze=tokens_heads`` (``freeze_task: [old_task_tokens,
old_heads]``), ``num_heads`` 8, one class-attention block (``depth`` 1: the config's
``depth: 6`` only sizes a drop-path list; the model has one block), ``mlp_ratio`` 4,
``pos_embed`` on. Replay: the recipe's memory (herding per class in the COCO/VOC recipes, as
the official code; its exemplars receive the labels of later sessions' classes, which is
``--memory-labels forward``).

Departures: ``embed_dim`` (None) is min(768, the backbone's channels): the official 768 on
TResNet-M (2048 channels), the channel count on smaller backbones (128 on ``smallcnn``,
whose 6x6 map at 24 px gives 36 patch tokens; 64 on ``resnet32``); ``label_cardinality``
(None) is the stream's labelled positives per training image, counted over all sessions'
training sets (the official code hard-codes VOC's 1.4 and COCO's 2.9); the DPL search
reads the eval transform and does not raise when it does not settle (strategies/krt.py);
the optimiser, schedule and augmentation are the recipe's (README, "Streams"). Not
implemented: the official code's unused parts (its POD terms, ``lambda_c`` = ``lambda_f`` =
0, ``use_head_div`` off, ``finetune_fc`` off).
"""
from functools import partial

from strategies.options import KRT_FREEZE, KRT_RESTORE, REDUCTIONS

from ._registry import register
from .asl import ASL_CHOICES, ASL_DEFAULTS, ASL_RANGES

DEFAULTS = {"restore": "dynamic", "thre": 0.8, "label_cardinality": None,
            "lambda_tdl": 80.0, **ASL_DEFAULTS, "negatives": "seen", "reduction": "sum",
            "freeze": "tokens_heads", "embed_dim": None, "depth": 1, "num_heads": 8,
            "mlp_ratio": 4.0, "pos_embed": True}


@register("krt", label_modes={"multi"}, paper="arXiv:2302.13334", defaults=DEFAULTS,
          choices={"restore": KRT_RESTORE, "reduction": REDUCTIONS, "freeze": KRT_FREEZE,
                   **ASL_CHOICES},
          ranges={"thre": (0.0, 1.0), "label_cardinality": (0.0, None),
                  "lambda_tdl": (0.0, None), "embed_dim": (1, 4096), "depth": (1, 12),
                  "num_heads": (1, 64), "mlp_ratio": (0.25, 16.0), **ASL_RANGES},
          space={"lambda_tdl": ("log", 1.0, 1000.0), "thre": ("float", 0.5, 0.95)},
          constraints=[(("embed_dim", "num_heads"), "embed_dim is null or a multiple of "
                        "num_heads (attention splits it into heads)",
                        lambda embed_dim, num_heads: embed_dim is None
                        or embed_dim % num_heads == 0)])
def build(ctx):
    """KRT: dynamic pseudo-labels, incremental cross-attention and its token loss, replay."""
    from strategies.krt import (KnowledgeRestore, KnowledgeTransfer, KRTNet,
                                label_cardinality, summed)
    from strategies.losses import asymmetric_loss

    h = ctx.hparams
    sample = ctx.benchmark.train_stream[0].dataset[0][0]
    ctx.model = KRTNet(ctx.model.spatial_trunk(), ctx.info.sessions, sample,
                       embed_dim=h["embed_dim"], depth=h["depth"], num_heads=h["num_heads"],
                       mlp_ratio=h["mlp_ratio"], pos_embed=h["pos_embed"]).to(ctx.device)
    cardinality = h["label_cardinality"]
    if cardinality is None:
        cardinality = label_cardinality([exp.dataset for exp in ctx.benchmark.train_stream])
    loss = partial(asymmetric_loss, gamma_neg=h["gamma_neg"], gamma_pos=h["gamma_pos"],
                   clip=h["clip"], focal_grad=h["focal_grad"])
    restore = KnowledgeRestore(h["restore"], h["thre"], cardinality)
    transfer = KnowledgeTransfer(h["lambda_tdl"], h["freeze"])
    return ctx.template(criterion=summed(loss) if h["reduction"] == "sum" else loss,
                        plugins=[ctx.memory(), transfer, restore], negatives=h["negatives"])
