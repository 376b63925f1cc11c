"""The training template: Avalanche's SupervisedTemplate for class-incremental streams whose
batches carry partial labels.

A batch is ``(x, y, mask, session)``. The template adds what imbalance-aware methods need,
as state that plugins read inside Avalanche's usual hooks:

- ``session``, ``n_seen``: the session being trained and the classes seen by its end
  (classes are indexed in arrival order, so seen classes are ``0..n_seen-1``);
  ``n_old``: classes seen before it.
- ``mb_mask``, ``mb_session``: the batch's labelled-entry mask and origin sessions.
- ``prev_model``: a frozen eval-mode copy of the model taken once at the start of every
  session after the first, kept only if a plugin sets ``needs_previous_model = True``;
  ``prev_output``: its logits on the current batch, computed once per iteration on demand.
- ``class_counts``: per-class labelled training samples of the current session, memory
  included (computed after the dataset adaptation hooks), and ``info.class_counts``, the
  stream's original counts.
- Hooks: ``after_forward`` may rewrite ``mbatch[1]`` / ``mbatch[2]`` (targets and mask)
  before the loss; ``before_backward`` may add to ``strategy.loss``; ``after_backward`` may
  rewrite gradients (e.g. ``model.head.weight.grad`` rows) before the optimizer step.

The loss is ``criterion(logits[:, :n_seen], targets, mask[:, :n_seen])`` (see losses.py).
A non-finite training loss raises :class:`Diverged` at the end of the epoch (one host sync
per epoch, none per step).

``amp`` (``off``/``bf16``/``fp16``) runs the model under autocast with float32 logits (fp16 with
a GradScaler, unscaled before ``after_backward``); ``channels_last`` converts model and batches.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Optional

import torch
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from .loader import batch_loader
from .losses import default_loss

# The ``amp`` setting -> autocast dtype (None: autocast off).
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def label_counts(dataset, num_classes: int, label_mode: str) -> torch.Tensor:
    """Labelled positives per class in a LabelledSet-like dataset (no image is loaded)."""
    if label_mode == "multi":
        return (dataset.targets * dataset.mask).sum(0)
    return torch.bincount(dataset.targets, minlength=num_classes).float()


def silent_evaluator() -> EvaluationPlugin:
    """An EvaluationPlugin with no metrics and no loggers (the suite's ScoreCollector
    gathers the metrics), without Avalanche's warning about the missing loggers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No loggers specified")
        return EvaluationPlugin(loggers=[])


class CILTemplate(SupervisedTemplate):
    """SupervisedTemplate over ``(x, y, mask, session)`` batches with seen-class masking."""

    def __init__(self, *, model, optimizer, info, criterion=None, plugins=(), evaluator=None,
                 device="cpu", train_mb_size=64, train_epochs=1, eval_mb_size=256,
                 num_workers: int = 0, amp: str = "off", channels_last: bool = False):
        if amp not in AMP_DTYPES:
            raise ValueError(f"unknown amp {amp!r}; accepted: {', '.join(AMP_DTYPES)}")
        super().__init__(
            model=model, optimizer=optimizer,
            criterion=criterion or default_loss(info.label_mode),
            train_mb_size=train_mb_size, train_epochs=train_epochs, eval_mb_size=eval_mb_size,
            device=device, plugins=list(plugins),
            evaluator=evaluator or silent_evaluator(), eval_every=-1)
        self.info = info
        self.num_workers = num_workers
        self.amp_dtype = AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.session = -1
        self.n_seen = 0
        self.n_old = 0
        self.prev_model: Optional[torch.nn.Module] = None
        self.class_counts: Optional[torch.Tensor] = None
        self.epoch_losses: list[float] = []
        self._prev_output = None
        self._loss_sum = None

    # --- batch fields -------------------------------------------------------------------
    @property
    def mb_mask(self) -> torch.Tensor:
        return self.mbatch[2]

    @property
    def mb_session(self) -> torch.Tensor:
        return self.mbatch[3]

    @property
    def prev_output(self) -> Optional[torch.Tensor]:
        """Logits of the previous session's model on the current batch (None in session 0)."""
        if self.prev_model is None:
            return None
        if self._prev_output is None:
            with torch.no_grad():
                self._prev_output = self._logits(self.prev_model)
        return self._prev_output

    def _logits(self, model: torch.nn.Module) -> torch.Tensor:
        """``model`` on the current batch under the ``amp`` autocast, as float32 logits."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            return model(self.mb_x).float()

    # --- template steps -----------------------------------------------------------------
    def _unpack_minibatch(self):
        super()._unpack_minibatch()
        if self.channels_last and self.mbatch[0].dim() == 4:
            self.mbatch[0] = self.mbatch[0].contiguous(memory_format=torch.channels_last)

    def forward(self):
        return self._logits(self.model)

    def backward(self):
        """Plain backward; with fp16, scaled, then unscaled so plugins see true gradients."""
        if self.scaler is None:
            return super().backward()
        self.scaler.scale(self.loss).backward(retain_graph=self.retain_graph)
        self.scaler.unscale_(self.optimizer)

    def optimizer_step(self):
        if self.scaler is None:
            return super().optimizer_step()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def criterion(self):
        n = self.n_seen
        y = self.mb_y[:, :n] if self.info.label_mode == "multi" else self.mb_y
        return self._criterion(self.mb_output[:, :n], y, self.mb_mask[:, :n])

    def _before_training_exp(self, **kwargs):
        self.session = self.experience.current_experience
        self.n_seen = self.info.seen_after(self.session)
        self.n_old = self.info.sessions[self.session][0]
        self.epoch_losses = []
        needs_prev = any(getattr(p, "needs_previous_model", False) for p in self.plugins)
        self.prev_model = None
        if needs_prev and self.session > 0:
            self.prev_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        super()._before_training_exp(**kwargs)

    def make_train_dataloader(self, num_workers=None, shuffle=True, drop_last=False, **kwargs):
        """A batch loader over the adapted dataset (see strategies/loader.py)."""
        self.class_counts = label_counts(self.adapted_dataset, self.info.num_classes,
                                         self.info.label_mode).to(self.device)
        self.dataloader = self._loader(self.train_mb_size, num_workers, shuffle, drop_last)

    def make_eval_dataloader(self, num_workers=None, **kwargs):
        self.dataloader = self._loader(self.eval_mb_size, num_workers, False, False)

    def _loader(self, batch_size, num_workers, shuffle, drop_last):
        workers = self.num_workers if num_workers is None else num_workers
        return batch_loader(self.adapted_dataset, batch_size, shuffle=shuffle,
                            drop_last=drop_last, num_workers=workers,
                            pin_memory=self.device.type == "cuda")

    def _before_training_iteration(self, **kwargs):
        self._prev_output = None
        super()._before_training_iteration(**kwargs)

    def _before_training_epoch(self, **kwargs):
        self._loss_sum = self._make_empty_loss()
        super()._before_training_epoch(**kwargs)

    def _after_backward(self, **kwargs):
        self._loss_sum += self.loss.detach()
        super()._after_backward(**kwargs)

    def _after_training_epoch(self, **kwargs):
        mean = float(self._loss_sum) / max(1, len(self.dataloader))
        if not math.isfinite(mean):
            raise Diverged(f"training loss became {mean} in session {self.session}, "
                           f"epoch {len(self.epoch_losses)}")
        self.epoch_losses.append(mean)
        super()._after_training_epoch(**kwargs)

    def _after_training_exp(self, **kwargs):
        super()._after_training_exp(**kwargs)
        self._prev_output = None
