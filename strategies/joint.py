"""Joint training (the upper bound): each session trains on all data seen so far."""
from __future__ import annotations

from avalanche.core import SupervisedPlugin


class CumulativeDataPlugin(SupervisedPlugin):
    """Replaces session t's training data with ``joint_stream[t]``: every training sample
    of sessions 0..t, with full labels over the classes seen so far (multi-label)."""

    def __init__(self, joint_stream):
        super().__init__()
        self.joint_stream = joint_stream

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        strategy.adapted_dataset = self.joint_stream[strategy.session].dataset.train()
