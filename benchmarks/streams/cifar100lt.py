"""CIFAR-100-LT as a single-label class-incremental stream (``cifar100lt``).

Long tail as in the gradient-reweighting CIL work (He et al., JiangpengHe/imbalanced_cil):
CIFAR class ``c`` (0..99) keeps the first ``n_c = int(n_max * ratio^(-c/99))`` of its
training images in file order (no sampling), ``n_max`` being the smallest per-class count
of the training file (500 for CIFAR-100) and ``ratio`` the option (default 100). The test
set stays balanced. Class order: ``order=shuffled`` (default) permutes the classes with
``data_seed`` so head classes spread over sessions; ``order=ordered`` keeps the CIFAR index
order (head classes first).

The files are the python-version pickles torchvision's ``CIFAR100`` reads; they are read
directly (no checksum test) and nothing is ever downloaded.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T

from . import StreamData, datasets
from .catalog import CIFAR_FOLDER as FOLDER
from .catalog import CIFAR_RECIPE as RECIPE
from .base import StreamInfo, positions, session_splits, singlelabel_sets
from .images import (ArrayPool, arrival_order, normalised,
                     recipe)

CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _unpickle(root: Path, part: str) -> dict:
    with open(root / FOLDER / part, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _split(root: Path, part: str) -> tuple[np.ndarray, torch.Tensor]:
    """Images (N, 32, 32, 3) uint8 and fine labels (N,) of the ``train`` or ``test`` file."""
    entry = _unpickle(root, part)
    images = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), torch.as_tensor(entry[b"fine_labels"])


def long_tail_counts(available: torch.Tensor, ratio: float) -> torch.Tensor:
    """Training images kept per class: ``int(n_max * ratio^(-c/(C-1)))``, ``n_max`` the
    smallest of the ``available`` per-class counts."""
    c = torch.arange(len(available), dtype=torch.float64)
    return (available.min() * ratio ** (-c / (len(available) - 1))).long()


def first_per_class(labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Indices (in file order) of the first ``counts[c]`` samples of each class ``c``."""
    by_class = torch.argsort(labels, stable=True)
    sizes = torch.bincount(labels, minlength=len(counts))
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty_like(labels)
    rank[by_class] = torch.arange(len(labels)) - starts[labels[by_class]]
    return torch.nonzero(rank < counts[labels]).flatten()


def cifar_transforms(size: int) -> dict:
    """Random crop (padding 4) and flip in training, CIFAR-100 statistics; images are
    resized first when ``size`` is not 32."""
    resize = [] if size == 32 else [T.Resize((size, size))]
    train = resize + [T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()]
    return normalised(train, resize, CIFAR_MEAN, CIFAR_STD)


def build_cifar100lt(name, data_root=None, image_size=None):
    opts = name.options
    root = datasets()["cifar100lt"].locate(data_root)
    class_names = [n.decode() for n in _unpickle(root, "meta")[b"fine_label_names"]]
    num_classes = len(class_names)
    x_train, l_train = _split(root, "train")
    x_test, l_test = _split(root, "test")
    counts = long_tail_counts(torch.bincount(l_train, minlength=num_classes), opts["ratio"])
    kept = first_per_class(l_train, counts)
    order = arrival_order(num_classes, opts["order"], "ordered", opts["data_seed"])
    position = positions(order)
    y_train, y_test = position[l_train[kept]], position[l_test]
    sessions = session_splits(num_classes, name.base, name.inc)
    cfg = recipe(RECIPE, image_size)
    tf = cifar_transforms(cfg["image_size"])
    info = StreamInfo(str(name), "single", [class_names[c] for c in order], order.tolist(),
                      sessions, torch.bincount(y_train, minlength=num_classes).tolist(), cfg)
    train_pool, test_pool = ArrayPool(x_train[kept.numpy()]), ArrayPool(x_test)
    return StreamData(info, singlelabel_sets(train_pool, y_train, sessions, tf, True),
                      singlelabel_sets(test_pool, y_test, sessions, tf, False), y_train)
