"""What a method's build function receives: the pieces of one cell, and factories that turn
the stream's training recipe into Avalanche objects."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from avalanche.training.plugins import LRSchedulerPlugin

from strategies.memory import LabelMemory, MemoryPlugin
from strategies.template import CILTemplate


def make_optimizer(model: torch.nn.Module, train: dict) -> torch.optim.Optimizer:
    """Adam or SGD (momentum 0.9) with the recipe's lr and weight decay."""
    name, lr, wd = train["optimizer"], train["lr"], train["weight_decay"]
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; known: adam, sgd")


@dataclass
class MethodContext:
    """``model`` (a CILNet), ``info`` (StreamInfo), ``hparams`` (the method's resolved
    hyperparameters), ``train`` (the resolved recipe), ``benchmark`` (the Avalanche benchmark,
    e.g. for ``joint_stream``), ``device``, ``plugins`` every strategy must carry (the
    evaluation collector), and the cell's ``seed`` (for the strategy's own generators)."""

    model: torch.nn.Module
    info: Any
    hparams: dict
    train: dict
    benchmark: Any
    device: torch.device
    plugins: list = field(default_factory=list)
    seed: int = 0

    def template(self, criterion=None, plugins=(), cls=CILTemplate, **kwargs) -> CILTemplate:
        """The training template configured by the recipe, with ``plugins`` added.

        Pass ``cls`` to use a CILTemplate subclass; extra ``kwargs`` go to its constructor.
        """
        optimizer = make_optimizer(self.model, self.train)
        extra = list(self.plugins)
        if self.train["milestones"]:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, self.train["milestones"],
                                                             gamma=0.1)
            extra.append(LRSchedulerPlugin(scheduler, reset_scheduler=True, reset_lr=True))
        return cls(model=self.model, optimizer=optimizer, info=self.info, criterion=criterion,
                   plugins=[*plugins, *extra], device=self.device,
                   train_mb_size=self.train["batch_size"], train_epochs=self.train["epochs"],
                   eval_mb_size=self.train["eval_batch_size"],
                   num_workers=self.train["num_workers"], amp=self.train["amp"],
                   channels_last=self.train["channels_last"], seed=self.seed,
                   reset_optimizer=self.train["reset_optimizer"],
                   replay_batch=self.train["replay_batch"], **kwargs)

    def memory(self) -> MemoryPlugin:
        """The replay memory the recipe asks for (size, per_class|total, herding|random,
        own|forward labels)."""
        return MemoryPlugin(LabelMemory(self.train["memory"], self.train["memory_mode"],
                                        self.train["selection"], self.train["eval_batch_size"],
                                        self.train["num_workers"],
                                        torch.Generator().manual_seed(self.seed)),
                            self.train["memory_labels"])
