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
- ``class_counts``: per-class labelled positives of the current session's training set,
  memory included (computed after the dataset adaptation hooks); ``class_negatives``: its
  per-class supervised negatives (multi-label, under ``negatives``; single-label: the
  samples of other classes); ``info.class_counts``, the stream's original counts.
- ``negatives``: which unlabelled entries a multi-label loss supervises as negatives
  (``labelled``, ``seen`` or ``session``; see losses.py), for every method alike.
- ``notes``: a dict, emptied at every session start, where plugins write what the session's
  record should keep (e.g. PSD's partitions); the cell stores it with the session's metrics.
- Hooks: ``after_forward`` may rewrite ``mbatch[1]`` / ``mbatch[2]`` (targets and mask)
  before the loss; ``before_backward`` may add to ``strategy.loss``; ``after_backward`` may
  rewrite gradients (e.g. ``model.head.weight.grad`` rows) before the optimizer step.

The loss is ``criterion(logits[:, :n_seen], targets, supervised_mask)`` (see losses.py).
A non-finite training loss raises :class:`Diverged` at the end of the epoch (one host sync
per epoch, none per step).

Randomness: ``seed`` seeds the training shuffles' own generator, and torch's global
generator (augmentation, dropout, models built inside a session) is reseeded from
``(seed, session)`` at the start of every session, so that what one part draws (a memory's
selection, a feature pass) never shifts another part's stream. ``reset_optimizer`` clears
the optimizer's state (e.g. Adam's moments) at every session start, as the reference code
bases create a fresh optimizer per session.

Head rows: a class's row of ``model.head`` (weight and bias) starts its first session as
initialised, with no optimizer state: at every session start the rows of the session's new
classes are set back to the values the template found at construction and their optimizer
state (momentum, Adam's moments) is zeroed. Weight decay and momentum would otherwise have
shrunk them during earlier sessions; the reference code bases add a fresh head per task.

Replay batches (``replay_batch``): with ``concat`` (default; LT-CIL/FACIL and PyCIL) a memory
that joined the session's data is shuffled with it, so memory rows fill batches in their share
of the set; with ``balanced`` (Avalanche's ``ReplayPlugin``) every step takes a batch of the
session's own rows and a batch of memory rows, each of ``train_mb_size``, side by side, through
Avalanche's ``ReplayDataLoader`` (memory cycled, an epoch ends with the session's rows). The
memory rows are the rows of ``adapted_dataset`` from earlier sessions (a memory row keeps its
session), split off only when a memory joined the data (``replay_memory``, set by
strategies/memory.py's MemoryPlugin); class counts still count the whole training set.

``amp`` (``off``/``bf16``/``fp16``) runs the model under autocast with float32 logits (fp16 with
a GradScaler, unscaled before ``after_backward``); ``channels_last`` converts model and batches.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Optional

import torch
from avalanche.benchmarks.utils.data_loader import ReplayDataLoader
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from .loader import batch_loader
from .losses import NEGATIVES, default_loss, supervised_mask

# How replayed memory rows meet the session's rows in a batch (see the module docstring).
REPLAY_BATCHES = ("concat", "balanced")
# The ``amp`` setting -> autocast dtype (None: autocast off).
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def session_seed(seed: int, session: int) -> int:
    """The seed of torch's global generator for ``session`` of a cell seeded ``seed``."""
    return (seed * 1_000_003 + session) % 2 ** 63


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def label_counts(dataset, num_classes: int, label_mode: str, negatives: str = "labelled",
                 n_old: int = 0, n_seen: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Supervised positives and negatives per class (num_classes,) in a LabelledSet-like
    dataset (no image is loaded); multi-label negatives follow the ``negatives`` option over
    the first ``n_seen`` classes (unseen classes count nothing)."""
    if label_mode == "multi":
        n_seen = num_classes if n_seen is None else n_seen
        mask = torch.zeros(dataset.mask.shape)
        mask[:, :n_seen] = supervised_mask(dataset.mask[:, :n_seen], negatives, n_old).float()
        positives = (dataset.targets * mask).sum(0)
        return positives, mask.sum(0) - positives
    positives = torch.bincount(dataset.targets, minlength=num_classes).float()
    return positives, len(dataset.targets) - positives


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
                 num_workers: int = 0, amp: str = "off", channels_last: bool = False,
                 negatives: str = "labelled", seed: int = 0, reset_optimizer: bool = True,
                 replay_batch: str = "concat"):
        if amp not in AMP_DTYPES:
            raise ValueError(f"unknown amp {amp!r}; accepted: {', '.join(AMP_DTYPES)}")
        if negatives not in NEGATIVES:
            raise ValueError(f"unknown negatives {negatives!r}; accepted: {', '.join(NEGATIVES)}")
        if replay_batch not in REPLAY_BATCHES:
            raise ValueError(f"unknown replay_batch {replay_batch!r}; accepted: "
                             + ", ".join(REPLAY_BATCHES))
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
        self.negatives = negatives
        self.seed = seed
        self.reset_optimizer = reset_optimizer
        self.replay_batch = replay_batch
        self.replay_memory = None  # the memory that joined this session's data, if any
        self.shuffle_generator = torch.Generator().manual_seed(seed)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.session = -1
        self.n_seen = 0
        self.n_old = 0
        self.prev_model: Optional[torch.nn.Module] = None
        self.class_counts: Optional[torch.Tensor] = None
        self.class_negatives: Optional[torch.Tensor] = None
        self.epoch_losses: list[float] = []
        self.notes: dict = {}
        self._prev_output = None
        self._loss_sum = None
        head = getattr(self.model, "head", None)
        self._head_init = None if head is None else \
            {name: p.detach().clone() for name, p in head.named_parameters()}

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

    @property
    def mb_supervised(self) -> torch.Tensor:
        """The batch's supervised entries over the seen classes (the mask the loss uses)."""
        mask = self.mb_mask[:, :self.n_seen]
        if self.info.label_mode != "multi":
            return mask
        return supervised_mask(mask, self.negatives, self.n_old)

    def criterion(self):
        n = self.n_seen
        y = self.mb_y[:, :n] if self.info.label_mode == "multi" else self.mb_y
        return self._criterion(self.mb_output[:, :n], y, self.mb_supervised)

    def _before_training_exp(self, **kwargs):
        self.session = self.experience.current_experience
        self.n_seen = self.info.seen_after(self.session)
        self.n_old = self.info.sessions[self.session][0]
        self.epoch_losses = []
        self.notes = {}
        self.replay_memory = None
        needs_prev = any(getattr(p, "needs_previous_model", False) for p in self.plugins)
        self.prev_model = None
        torch.manual_seed(session_seed(self.seed, self.session))
        self._fresh_head_rows()
        if needs_prev and self.session > 0:
            self.prev_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        super()._before_training_exp(**kwargs)

    def _fresh_head_rows(self):
        """Set the head rows of the session's new classes back to their initial values and
        zero their optimizer state."""
        if self._head_init is None:
            return
        rows = slice(self.n_old, self.n_seen)
        with torch.no_grad():
            for name, param in self.model.head.named_parameters():
                param[rows] = self._head_init[name][rows].to(param.device)
                for value in self.optimizer.state.get(param, {}).values():
                    if torch.is_tensor(value) and value.shape == param.shape:
                        value[rows] = 0

    def make_train_dataloader(self, num_workers=None, shuffle=True, drop_last=False, **kwargs):
        """A batch loader over the adapted dataset (see strategies/loader.py)."""
        positives, negatives = label_counts(self.adapted_dataset, self.info.num_classes,
                                            self.info.label_mode, self.negatives, self.n_old,
                                            self.n_seen)
        self.class_counts = positives.to(self.device)
        self.class_negatives = negatives.to(self.device)
        if self.replay_batch == "balanced" and self.replay_memory is not None:
            self.dataloader = self._replay_loader(num_workers, shuffle, drop_last)
        else:
            self.dataloader = self._loader(self.train_mb_size, num_workers, shuffle, drop_last)

    def _replay_loader(self, num_workers, shuffle, drop_last):
        """Avalanche's ReplayDataLoader over the session's rows and the memory rows of
        ``adapted_dataset``, as ReplayPlugin builds it (both batches ``train_mb_size``)."""
        data = self.adapted_dataset
        old = data.session < self.session
        if not old.any() or old.all():
            return self._loader(self.train_mb_size, num_workers, shuffle, drop_last)
        workers = self.num_workers if num_workers is None else num_workers
        return ReplayDataLoader(
            data.subset(torch.nonzero(~old).flatten()), data.subset(torch.nonzero(old).flatten()),
            oversample_small_tasks=True, batch_size=self.train_mb_size,
            batch_size_mem=self.train_mb_size, num_workers=workers, shuffle=shuffle,
            drop_last=drop_last, generator=self.shuffle_generator,
            pin_memory=self.device.type == "cuda")

    def make_eval_dataloader(self, num_workers=None, **kwargs):
        self.dataloader = self._loader(self.eval_mb_size, num_workers, False, False)

    def check_model_and_optimizer(self, reset_optimizer_state=False, **kwargs):
        super().check_model_and_optimizer(reset_optimizer_state=self.reset_optimizer, **kwargs)

    def _loader(self, batch_size, num_workers, shuffle, drop_last):
        workers = self.num_workers if num_workers is None else num_workers
        return batch_loader(self.adapted_dataset, batch_size, shuffle=shuffle,
                            drop_last=drop_last, num_workers=workers,
                            pin_memory=self.device.type == "cuda",
                            generator=self.shuffle_generator if shuffle else None)

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
