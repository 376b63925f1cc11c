"""Which suite cell is checked against which Avalanche 0.6 strategy, and what differs.

A :class:`Pair` names the suite method with its hyperparameter and recipe overrides, the
Avalanche variant (avalanche_side.build) and ``notes``: what the harness sets alike by a
subclass or an argument, and what stays different. Torch-free, so that the CLI can check
its input before any work.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# The suite side of replay-based pairs draws its memory at random per class, as Avalanche's
# class-balanced reservoir buffer does (the recipe's default is herding).
RANDOM = {"selection": "random"}
LATER_STAGE2 = ("Avalanche's stage 2 decays its lr by 0.1 at epochs 50/100/150 (FACIL); the "
                "suite's keeps it constant. Avalanche holds out 10% of mem_size in all, split "
                "over the seen classes (here 20 images: 10 per class after the first session, 2 "
                "once all are seen), taken from each new class's first images; the suite "
                "ceil(0.1 x 20) = 2 per class, drawn at random, out of the memory's quota "
                "(18 exemplars per class on both sides): in the first session it trains "
                "without 10 of the images of each class, the likely cause (not isolated) of "
                "its lower avg_acc. Its distillation softmax runs over "
                "the batch axis: set to the class axis (subclass). Its MultiStepLR(verbose=) "
                "fails under torch 2.14: verbose dropped (subclass).")


@dataclass(frozen=True)
class Pair:
    """``method`` with ``hparams`` and recipe ``train`` overrides against Avalanche's
    ``variant``; ``row`` names the pair in the table."""

    row: str
    method: str
    variant: str
    hparams: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    notes: str = ""


PAIRS: dict[str, list[Pair]] = {
    "finetune": [Pair("finetune / Naive", "finetune", "naive",
                      notes="Same loss (cross-entropy over the seen classes).")],
    "replay": [
        Pair("replay concat / Naive + buffer concatenated", "replay", "replay-concat",
             train={**RANDOM, "replay_batch": "concat"},
             notes="Avalanche ships no concatenating replay: its ClassBalancedBuffer joins "
                   "the session's data (a 12-line plugin), the suite's default batches."),
        Pair("replay balanced / Replay (ReplayPlugin)", "replay", "replay",
             train={**RANDOM, "replay_batch": "balanced"},
             notes="Both use Avalanche's ReplayDataLoader: a batch of new images plus a "
                   "batch of memory images per step."),
    ],
    "lwf": [Pair("lwf / LwF", "lwf", "lwf",
                 notes="Avalanche's KL has no T^2 factor: its alpha is set to alpha x T^2 = "
                       "4. Its teacher is a train-mode copy (BatchNorm on batch statistics): "
                       "set to eval mode (subclass).")],
    "icarl": [Pair("icarl / ICaRL", "icarl", "icarl",
                   notes="Memory: herding on both sides, 20 per class (fixed_memory=False). "
                         "Avalanche averages horizontally flipped exemplars into the class "
                         "means: flips turned off (subclass). Not set alike: Avalanche's "
                         "loss is the original all-sigmoid BCE over every head output "
                         "(unseen classes as negatives, old targets the previous model's "
                         "sigmoids); the suite's is LT-CIL's softmax CE over the seen "
                         "classes plus the old classes' summed sigmoid BCE. Avalanche's "
                         "herding picks by the running-sum rule of the original code."),
              Pair("icarl / ICaRL, LT-CIL loss", "icarl", "icarl-lt-loss",
                   notes="As the row above, with Avalanche's loss replaced by the suite's "
                         "(LT-CIL: softmax CE over the seen classes plus the old classes' "
                         "summed sigmoid BCE to the previous model, its teacher in eval mode; "
                         "a subclass of its ICaRLLossPlugin).")],
    "bic": [
        Pair("bic bias_layers=latest / BiC", "bic", "bic", {"bias_layers": "latest"},
             {**RANDOM, "replay_batch": "balanced"},
             "Latest bias layer only on both sides (the original code). " + LATER_STAGE2),
        Pair("bic bias_layers=all / BiC", "bic", "bic", {"bias_layers": "all"},
             {**RANDOM, "replay_batch": "balanced"},
             "The suite keeps every session's bias layer (FACIL, PyCIL); Avalanche only "
             "the latest. " + LATER_STAGE2),
    ],
}

METRICS = ("last_acc", "last_old_acc", "avg_acc")
