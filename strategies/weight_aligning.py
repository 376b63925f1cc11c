"""Weight aligning (Zhao et al., "Maintaining Discrimination and Fairness in Class
Incremental Learning", CVPR 2020, Eq. 6-8; PyCIL ``IncrementalNet.weight_align``).

After a session's training, the classifier rows of the new classes are rescaled so that
their mean L2 norm equals that of the old classes' rows:
``gamma = mean_{c old} ||w_c|| / mean_{c new} ||w_c||``, ``w_c <- gamma w_c`` for new c.
The biases are left as they are (as in PyCIL). On a sigmoid head (multi-label) the same
rows are rescaled: each class's logit is ``w_c . f + b_c`` either way.
"""
from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin


def alignment_factor(weight: torch.Tensor, n_old: int, n_seen: int) -> torch.Tensor:
    """``gamma`` of Eq. 8 from the classifier ``weight`` rows: old ``:n_old``, new
    ``n_old:n_seen``."""
    norms = weight[:n_seen].norm(dim=1)
    return norms[:n_old].mean() / norms[n_old:].mean()


@torch.no_grad()
def align_weights(head: torch.nn.Linear, n_old: int, n_seen: int) -> float:
    """Rescale the new classes' rows of ``head.weight`` in place; return gamma."""
    gamma = alignment_factor(head.weight, n_old, n_seen)
    head.weight[n_old:n_seen] *= gamma
    return float(gamma)


class WeightAligning(SupervisedPlugin):
    """Aligns the new classes' weights after every session but the first; the factor is
    written to the session's notes (``wa_gamma``)."""

    def after_training_exp(self, strategy, **kwargs):
        if strategy.n_old == 0:
            return
        strategy.notes["wa_gamma"] = align_weights(strategy.model.head, strategy.n_old,
                                                   strategy.n_seen)
