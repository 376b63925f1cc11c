"""Parallel self-distillation (PSD; Xu et al., IJCAI 2022, arXiv:2205.10986): teachers on the
co-occurrence and dis-occurrence partitions of the label graph, distilled into the model;
see strategies/psd.py for the equations and the choices made.

Class-incremental adaptation (ours): in every session the partitioned classes are the seen
classes with labelled positives in the session's data, which holds the recipe's replay
memory (so the session's classes, plus old classes where the memory carries their labels);
the teachers train on the session's data plus memory, and the student's loss adds LwF's
distillation on old classes (``lwf_alpha``, strategies/distillation.py) to PSD's. A session
with fewer than 2 partitioned classes trains by plain ASL (said in its record's ``notes``).
On the one-session protocol (``digits:B10``) this is PSD as published.

As in the official code by default: ``teacher_mode=train`` keeps the teachers in training
mode while they are queried for the student (their BatchNorm normalises by the batch's own
statistics; the official ``dis_B_cpsd.py`` never calls ``eval()`` on them), ``eval`` uses
their running statistics; ``focal_grad=detached`` (ASL's focusing weight without gradient,
the official ``disable_torch_grad_focal_loss=True``) for the teachers' and the student's
ASL alike, ``full`` keeps it.
"""
from strategies.options import TEACHER_MODES

from ._registry import register
from .asl import ASL_CHOICES, ASL_DEFAULTS, ASL_RANGES


@register("psd", label_modes={"multi"}, paper="arXiv:2205.10986",
          defaults={"clusters": 5, "alpha": 0.5, "teacher_epochs": None, "lwf_alpha": 1.0,
                    "teacher_mode": "train", **ASL_DEFAULTS},
          choices={"teacher_mode": TEACHER_MODES, **ASL_CHOICES},
          ranges={"clusters": (1, 64), "alpha": (0.0, 1.0), "teacher_epochs": (1, None),
                  "lwf_alpha": (0.0, None), **ASL_RANGES},
          space={"alpha": ("float", 0.0, 1.0), "clusters": ("int", 2, 5),
                 "lwf_alpha": ("log", 0.1, 10.0)})
def build(ctx):
    """PSD: 2K teachers on CGP/DGP label-graph partitions distilled into the model."""
    from strategies.distillation import LwFPlugin
    from strategies.psd import ParallelSelfDistillation

    from ._context import make_optimizer

    h = ctx.hparams
    psd = ParallelSelfDistillation(
        lambda teachers: make_optimizer(teachers, ctx.train), clusters=h["clusters"],
        alpha=h["alpha"], teacher_epochs=h["teacher_epochs"] or ctx.train["epochs"],
        gamma_neg=h["gamma_neg"], gamma_pos=h["gamma_pos"], clip=h["clip"],
        focal_grad=h["focal_grad"], teacher_mode=h["teacher_mode"])
    return ctx.template(criterion=psd.loss, negatives=h["negatives"],
                        plugins=[psd, ctx.memory(), LwFPlugin(h["lwf_alpha"])])
