"""Parallel self-distillation (PSD; Xu et al., "Boosting Multi-Label Image Classification with
Complementary Parallel Self-Distillation", IJCAI 2022, arXiv:2205.10986).

1. Label graph partitions (Sec. 3.1). From the training labels, co-occurrence counts N_ij
   (i != j) and class counts N_j give P_ij = N_ij / N_j. The co-occurrence graph partition
   (CGP) clusters the affinity sqrt(P), the dis-occurrence graph partition (DGP) 1 - sqrt(P),
   each symmetrised as (A + A^T) / 2, by spectral clustering (normalised cut) into K
   clusters: CGP groups classes that appear together, DGP classes that do not.
2. Teachers (Sec. 3.2): one per cluster of each partition (2K in all), each with the
   student's architecture, trained on every training image with targets restricted to its
   cluster, by the asymmetric loss (strategies/losses.py).
3. Student (Sec. 3.3, weights of the official ``dis_B_cpsd.py``): the teachers' logits are
   scattered back to their classes' positions, one logit vector per partition (z_CGP,
   z_DGP), and ``L = 0.5 ASL(z, y) + (alpha/2) D(z, z_CGP) + ((1 - alpha)/2) D(z, z_DGP)``
   with D the squared logit difference and alpha = 0.5.

Choices of this implementation (the official code is Robbie-Xu/CPSD; this is our own):

- The diagonal of the co-occurrence matrix is ignored (taken as 0), as in the ML-GCN
  adjacency the official partition script reads. The script keeps, of 4 spectral
  clusterings (k-means with 20 initialisations each), the one with the best
  Calinski-Harabasz score on the affinity rows; its 4 runs differ only by a ``gamma`` that
  a precomputed affinity ignores, so here they differ by their seed (``seed * 4 + r``).
  K is capped by the number of classes; with K equal to it every class is its own cluster.
- The official code trains the 2K teachers as 2K separate runs. Here one
  :class:`TeacherBank` holds them, their weights stacked, and :func:`strategies.fit.fit`
  trains them together, one pass over the data per epoch, each batch loaded (and
  augmented) once for all of them and run through all of them as one batched computation
  (``vmap`` of the architecture over the stacked weights; all teachers' activations are
  held at once); one backward pass of the summed losses and one optimizer step them all,
  which for Adam or SGD is the same as one optimizer per teacher. Teachers start from a copy of the model at the session's start
  (the official teachers start, like the student, from the same pretrained weights); their
  heads stay full-width, and only their cluster's columns are trained and read.
- As in the official code (its defaults here, each with an option to switch back): the
  teachers stay in training mode while the student queries them (``teacher_mode=train``;
  BatchNorm normalises each batch by its own statistics), and every ASL detaches its
  focusing weight (``focal_grad=detached``, the official ``disable_torch_grad_focal_loss``).
- The losses are means, not the official sums: ASL over the supervised entries, D over the
  partitioned classes of every sample; with every entry supervised and partitioned, the
  ratio between the terms is the official one. The official code keeps the teacher and
  student checkpoints with the best validation mAP (and an EMA); here every model is the
  last epoch's, as for every method of the suite.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from sklearn.cluster import SpectralClustering
from sklearn.metrics import calinski_harabasz_score
from threadpoolctl import threadpool_limits
from torch.func import functional_call, stack_module_state, vmap

from .fit import fit
from .losses import asymmetric_loss, supervised_mask
from .options import TEACHER_MODES
from .template import session_seed

KINDS = ("cgp", "dgp")
RESTARTS = 4  # spectral clusterings per partition, the best by Calinski-Harabasz score
KMEANS_INITS = 20  # k-means initialisations inside each, as in the official script


def affinity(cooc: np.ndarray, counts: np.ndarray, kind: str) -> np.ndarray:
    """The symmetrised affinity of partition ``kind`` (``cgp``: sqrt(P); ``dgp``:
    1 - sqrt(P)) from co-occurrence counts ``cooc`` (C, C; diagonal ignored) and class
    counts ``counts`` (C,), with P_ij = N_ij / N_j (a zero count read as 1)."""
    if kind not in KINDS:
        raise ValueError(f"unknown partition kind {kind!r}; accepted: {', '.join(KINDS)}")
    n = np.array(cooc, dtype=np.float64)
    np.fill_diagonal(n, 0.0)
    root = np.sqrt(n / np.maximum(np.asarray(counts, dtype=np.float64), 1.0)[None, :])
    a = root if kind == "cgp" else 1.0 - root
    return (a + a.T) / 2


def graph_partition(cooc: np.ndarray, counts: np.ndarray, k: int, kind: str,
                    seed: int) -> list[list[int]]:
    """Classes (row indices of ``cooc``) in ``min(k, C)`` clusters by spectral clustering of
    :func:`affinity`, the best of 4 seeded runs by Calinski-Harabasz score. Clusters are
    sorted lists, ordered by their smallest class; the same inputs and seed give the same
    partition."""
    a = affinity(cooc, counts, kind)
    size = len(a)
    k = min(k, size)
    if k <= 1:
        return [list(range(size))]
    if k == size:
        return [[c] for c in range(size)]
    best_score, best = -np.inf, None
    for r in range(RESTARTS):
        # one thread: a C x C problem gains nothing from more, and waits for busy cores
        with warnings.catch_warnings(), threadpool_limits(1):
            # a CGP graph may have classes that never co-occur
            warnings.filterwarnings("ignore", "Graph is not fully connected")
            labels = SpectralClustering(n_clusters=k, affinity="precomputed",
                                        n_init=KMEANS_INITS,
                                        random_state=seed * RESTARTS + r).fit_predict(a)
        found = len(np.unique(labels))
        score = calinski_harabasz_score(a, labels) if 1 < found < size else -np.inf
        if best is None or score > best_score:
            best_score, best = score, labels
    clusters = [np.flatnonzero(best == label).tolist() for label in np.unique(best)]
    return sorted(clusters)


def owner_table(partitions: list[list[list[int]]], num_classes: int) -> torch.Tensor:
    """(P, num_classes) long: for each partition, the index (over all partitions' clusters,
    in order) of the teacher that predicts each class; -1 where no cluster holds it.

    Every partition must cover the same classes, each exactly once."""
    owner = torch.full((len(partitions), num_classes), -1, dtype=torch.long)
    teacher = 0
    for p, clusters in enumerate(partitions):
        for cluster in clusters:
            if (owner[p, cluster] >= 0).any():
                raise ValueError(f"partition {p}: a class is in two clusters")
            owner[p, cluster] = teacher
            teacher += 1
    if not ((owner >= 0) == (owner[0] >= 0)).all():
        raise ValueError("the partitions cover different classes")
    return owner


def scatter_back(outputs: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Per partition, each class's logit taken from its teacher: ``outputs`` (T, B, C) the
    teachers' full-width logits, ``owner`` (P, C) from :func:`owner_table` -> (P, B, C),
    0 where a class is not partitioned."""
    index = owner.clamp(min=0)[:, None, :].expand(-1, outputs.shape[1], -1)
    picked = outputs.gather(0, index)
    return torch.where(owner[:, None, :] >= 0, picked, torch.zeros_like(picked))


class TeacherBank(torch.nn.Module):
    """The 2K teachers of one session, as one module: ``forward(x)`` gives the partitions'
    logits (P, B, C) scattered back (:func:`scatter_back`); :meth:`step` trains them all on
    one batch, for :func:`strategies.fit.fit`.

    The teachers' weights and buffers are stacked along a leading teacher axis
    (``torch.func.stack_module_state``) and every teacher runs in one batched computation,
    ``functional_call`` of the model's architecture under ``vmap``: one call per batch for
    all of them instead of one per teacher. Each teacher keeps its own BatchNorm statistics;
    a teacher's loss depends only on its own slice of the weights, so one backward pass of
    the summed losses gives each teacher the gradient it would get alone. ``teacher(i)``
    returns teacher i as a stand-alone module (a copy)."""

    def __init__(self, model: torch.nn.Module, partitions: list[list[list[int]]],
                 num_classes: int):
        super().__init__()
        owner = owner_table(partitions, num_classes)
        n = int(owner.max()) + 1
        params, buffers = stack_module_state([copy.deepcopy(model) for _ in range(n)])
        self._param_names, self._buffer_names = list(params), list(buffers)
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(params[name].detach().clone()) for name in self._param_names)
        for i, name in enumerate(self._buffer_names):
            self.register_buffer(f"stacked_buffer_{i}", buffers[name].clone())
        # the architecture without weights (not a submodule: its parameters are not ours)
        self.__dict__["architecture"] = copy.deepcopy(model).to("meta")
        self.register_buffer("owner", owner)
        # (T, C) the classes each teacher is trained on
        members = torch.zeros(n, num_classes, dtype=torch.bool)
        for p in range(len(owner)):
            covered = owner[p] >= 0
            members[owner[p, covered], torch.nonzero(covered).flatten()] = True
        self.register_buffer("members", members)

    def __len__(self) -> int:
        return len(self.members)

    def train(self, mode: bool = True):
        super().train(mode)
        self.architecture.train(mode)
        return self

    def _state(self) -> tuple[dict, dict]:
        params = dict(zip(self._param_names, self.weights))
        buffers = {name: getattr(self, f"stacked_buffer_{i}")
                   for i, name in enumerate(self._buffer_names)}
        return params, buffers

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every teacher's full-width logits on ``x``: (T, B, C)."""
        def one(params, buffers, x):
            return functional_call(self.architecture, (params, buffers), (x,))

        return vmap(one, in_dims=(0, 0, None), randomness="different")(*self._state(), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scatter_back(self.outputs(x), self.owner)

    def teacher(self, i: int) -> torch.nn.Module:
        """Teacher ``i`` as a stand-alone module (a copy of its weights and buffers)."""
        params, buffers = self._state()
        module = copy.deepcopy(self.architecture).to_empty(device=self.owner.device)
        module.load_state_dict({name: value[i].detach().clone()
                                for name, value in {**params, **buffers}.items()})
        return module.train(self.training)

    @staticmethod
    def step(bank: "TeacherBank", loss_fn, x, y, mask) -> torch.Tensor:
        """Forward and backward of every teacher on the batch, in one batched computation;
        ``loss_fn(logits, y, mask, classes)`` restricts the loss to the teacher's ``classes``
        (C,) bool. Returns the teachers' mean loss, detached."""
        losses = torch.stack([loss_fn(logits, y, mask, classes)
                              for logits, classes in zip(bank.outputs(x), bank.members)])
        losses.sum().backward()
        return losses.detach().mean()


def student_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                 teacher_logits: torch.Tensor, covered: torch.Tensor, alpha: float = 0.5,
                 **asl) -> torch.Tensor:
    """``0.5 ASL(z, y) + (alpha/2) D(z, z_CGP) + ((1 - alpha)/2) D(z, z_DGP)``.

    ``logits`` (B, C), ``targets``, ``mask`` as for every loss; ``teacher_logits`` (2, B, C)
    the CGP and DGP teachers' logits scattered back; ``covered`` (C,) bool, the partitioned
    classes. D is the squared difference averaged over the covered entries of every sample;
    ASL (``asl`` its keyword arguments) over the supervised entries."""
    classification = asymmetric_loss(logits, targets, mask, **asl)
    squared = (logits.unsqueeze(0) - teacher_logits) ** 2 * covered
    distances = squared.sum((1, 2)) / (covered.sum() * logits.shape[0]).clamp(min=1)
    return 0.5 * classification + alpha / 2 * distances[0] + (1 - alpha) / 2 * distances[1]


def label_graph(targets: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Co-occurrence counts (C, C) and class counts (C,) of the labelled positives: an
    unlabelled entry counts as absent."""
    known = (targets * mask).double()
    cooc = known.T @ known
    return cooc.numpy(), cooc.diagonal().numpy().copy()


class ParallelSelfDistillation(SupervisedPlugin):
    """PSD in every session: partitions, teachers, and the student loss (use :meth:`loss` as
    the template's criterion).

    At the start of a session the partitioned classes are the seen classes with labelled
    positives in the session's training data (the memory included, so old classes where
    the memory carries their labels); their label graph gives the CGP and DGP partitions,
    and the teachers train on the session's data for ``teacher_epochs``. The student then
    trains by :func:`student_loss`. With fewer than 2 partitioned classes the session falls
    back to plain ASL. ``strategy.notes["psd"]`` records the partitions (class indices in
    arrival order), the teachers' epoch losses, or the fallback.

    ``teacher_mode``: the teachers' mode while the student queries them, ``train`` (as the
    official code: BatchNorm with the batch's statistics) or ``eval`` (running statistics).
    ``focal_grad``: see :func:`strategies.losses.asymmetric_loss`, for every ASL of PSD.
    """

    def __init__(self, make_optimizer, *, clusters: int = 5, alpha: float = 0.5,
                 teacher_epochs: int, gamma_neg: float = 4.0, gamma_pos: float = 0.0,
                 clip: float = 0.05, focal_grad: str = "detached",
                 teacher_mode: str = "train"):
        super().__init__()
        if teacher_mode not in TEACHER_MODES:
            raise ValueError(f"unknown teacher_mode {teacher_mode!r}; accepted: "
                             f"{', '.join(TEACHER_MODES)}")
        self.make_optimizer = make_optimizer
        self.clusters, self.alpha, self.teacher_epochs = clusters, alpha, teacher_epochs
        self.teacher_mode = teacher_mode
        self.asl = dict(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip,
                        focal_grad=focal_grad)
        self.bank: TeacherBank | None = None
        self.covered: torch.Tensor | None = None
        self._teacher_logits = None

    def before_training_exp(self, strategy, **kwargs):
        data, n = strategy.adapted_dataset, strategy.n_seen
        cooc, counts = label_graph(data.targets[:, :n], data.mask[:, :n])
        classes = np.flatnonzero(counts > 0)
        self.bank = None
        if len(classes) < 2:
            strategy.notes["psd"] = {"fallback": f"{len(classes)} partitioned class(es): "
                                                 "plain ASL this session"}
            return
        sub = np.ix_(classes, classes)
        partitions = [[classes[c].tolist() for c in
                       graph_partition(cooc[sub], counts[classes], self.clusters, kind,
                                       strategy.seed)] for kind in KINDS]
        self.bank = TeacherBank(strategy.model, partitions, strategy.info.num_classes)
        self.covered = (self.bank.owner[0, :n] >= 0).to(strategy.device)
        losses = fit(self.bank, data, self._teacher_loss(strategy), epochs=self.teacher_epochs,
                     batch_size=strategy.train_mb_size,
                     optimizer=self.make_optimizer(self.bank), device=strategy.device,
                     num_workers=strategy.num_workers, step=TeacherBank.step,
                     generator=torch.Generator().manual_seed(
                         session_seed(strategy.seed, strategy.session)))
        # the official code queries its teachers in training mode (batch statistics in
        # BatchNorm); their running statistics then move, which nothing reads
        self.bank.train(self.teacher_mode == "train").requires_grad_(False)
        strategy.notes["psd"] = {"classes": classes.tolist(), "cgp": partitions[0],
                                 "dgp": partitions[1], "teacher_loss": losses}

    def _teacher_loss(self, strategy):
        n, negatives, n_old = strategy.n_seen, strategy.negatives, strategy.n_old

        def loss(logits, y, mask, classes):
            supervised = supervised_mask(mask[:, :n], negatives, n_old) & classes[:n]
            return asymmetric_loss(logits[:, :n], y[:, :n], supervised, **self.asl)
        return loss

    def after_forward(self, strategy, **kwargs):
        if self.bank is not None:
            with torch.no_grad():
                self._teacher_logits = strategy._logits(self.bank)

    def after_training_iteration(self, strategy, **kwargs):
        self._teacher_logits = None

    def after_training_exp(self, strategy, **kwargs):
        self.bank = None  # the teachers serve one session

    def loss(self, logits, targets, mask):
        """The template's criterion: :func:`student_loss` while training with teachers,
        plain ASL otherwise (fallback sessions, evaluation)."""
        if self._teacher_logits is None:
            return asymmetric_loss(logits, targets, mask, **self.asl)
        n = logits.shape[1]
        return student_loss(logits, targets, mask, self._teacher_logits[..., :n],
                            self.covered[:n], self.alpha, **self.asl)
