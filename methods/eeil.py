"""EEIL, end-to-end incremental learning (Castro et al., "End-to-End Incremental Learning",
ECCV 2018, arXiv:1807.09536), as the long-tailed CIL code (xialeiliu/Long-Tailed-CIL
``src/approach/eeil.py``, FACIL's EEIL); the mechanisms and their departures are in
strategies/eeil.py:

- replay with the recipe's memory (herding by default);
- loss (Eq. 1): cross-entropy over the seen classes plus ``lamb`` (= 1) times the sum over
  old sessions of the BCE between the softmaxes at T = ``temperature`` (= 2) of the current
  and previous model's logits of that session's classes;
- balanced fine-tuning after each session but the first: the memory plus as many random
  samples of the session's data, ``ft_epochs`` = 40 epochs at ``ft_lr_factor`` = 0.01
  times the recipe's lr (the reference's command-line defaults), same loss; then the
  memory update. Its time is ``eeil_ft_s`` in the session's notes.
- ``two_stage=true`` (Liu et al., ECCV 2022, arXiv:2210.00266, the reference's
  ``eeil_2stage.py``): after each session (and its fine-tuning), a learnable per-class
  weight scaling and the new classes' rows trained on class-balanced batches of frozen
  features (``stage2_epochs`` = 1, ``stage2_lr`` = 0.1, as that code;
  strategies/weight_scaling.py), the scales applied to the test logits; its time is
  ``lws_fit_s`` in the session's notes.

Departures (details in strategies/eeil.py): every old session is distilled in both stages
(the reference skips the last old session outside the fine-tuning); the fine-tuning's lr is
constant; no gradient noise (off by default in the reference). The reference's lr patience
schedule is the stream recipe's here, as for every method.
Multi-label (ours): the distillation is each old class's sigmoid distillation; the balanced
fine-tuning draws its subset among the session's images alike.
"""
from ._registry import register


@register("eeil", label_modes={"multi", "single"}, paper="arXiv:1807.09536",
          defaults={"lamb": 1.0, "temperature": 2.0, "ft_epochs": 40, "ft_lr_factor": 0.01,
                    "two_stage": False, "stage2_epochs": 1, "stage2_lr": 0.1},
          ranges={"lamb": (0.0, None), "temperature": (0.01, None), "ft_epochs": (0, None),
                  "ft_lr_factor": (1e-6, 1.0), "stage2_epochs": (1, None),
                  "stage2_lr": (1e-6, 10.0)},
          space={"lamb": ("log", 0.1, 10.0)})
def build(ctx):
    """EEIL: replay, per-session softmax distillation, balanced fine-tuning on memory + an equal share of new data."""
    import torch

    from strategies.eeil import BalancedFinetuning, BlockDistillation
    from strategies.weight_scaling import WeightScaling

    h = ctx.hparams
    memory = ctx.memory()
    finetuning = BalancedFinetuning(memory, h["ft_epochs"], h["ft_lr_factor"],
                                    torch.Generator().manual_seed(ctx.seed))
    plugins = [BlockDistillation(h["lamb"], h["temperature"]), finetuning, memory]
    if h["two_stage"]:
        plugins.insert(2, WeightScaling(ctx.info.num_classes, h["stage2_epochs"],
                                        h["stage2_lr"], ctx.train["weight_decay"],
                                        torch.Generator().manual_seed(ctx.seed + 1)))
    return ctx.template(plugins=plugins)
