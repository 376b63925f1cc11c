"""CIFAR-100-LT as a single-label class-incremental stream (``cifar100lt``).

The default stream is the ``cifar100_lt`` scenario of the official long-tailed CIL code
(xialeiliu/Long-Tailed-CIL, reused by the gradient-reweighting code JiangpengHe/imbalanced_cil):

- Long tail: CIFAR class ``c`` (0..99, CIFAR's own index) keeps ``n_c = int(n_max *
  (1/ratio)^(c/99))`` training images, ``n_max`` the mean per-class count of the training file
  (500) and ``ratio`` the option (default 100). Which images: numpy's legacy generator seeded
  with 0 shuffles each class's indices in turn (class 0 first) and the first ``n_c`` are kept.
  The test set stays balanced.
- Class order (option ``order``): ``official`` (default) is the scenario's fixed order list,
  ``ordered`` the CIFAR index order (the official ``cifar100_ltio``, head classes first),
  ``shuffled`` the suite's own permutation seeded by ``data_seed``. The counts follow the CIFAR
  class whatever the order.
- Transforms: pad 4, ``RandomResizedCrop(32)``, horizontal flip in training; the official
  normalisation statistics. Images are resized first when the image size is not 32.
- Hold-out: ``valid=0.1&valid_by=class`` holds out per class as the official loader does
  (see ``base.held_by_class``); the official script trains on the rest.

The files are the python-version pickles torchvision's ``CIFAR100`` reads; they are read
directly (no checksum test); the builder never downloads (``--download`` fetches them once,
in the driver: ``benchmarks/download.py``).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T

from . import StreamData, datasets
from .base import StreamInfo, positions, session_splits, singlelabel_sets
from .catalog import CIFAR_FOLDER as FOLDER
from .catalog import CIFAR_RECIPE as RECIPE
from .images import ArrayPool, arrival_order, normalised, recipe

# The class order of the official cifar100_lt scenario (src/datasets/dataset_config.py).
OFFICIAL_ORDER = [
    68, 56, 78, 8, 23, 84, 90, 65, 74, 76, 40, 89, 3, 92, 55, 9, 26, 80, 43, 38, 58, 70, 77, 1,
    85, 19, 17, 50, 28, 53, 13, 81, 45, 82, 6, 59, 83, 16, 15, 44, 91, 41, 72, 60, 79, 52, 20, 10,
    31, 54, 37, 95, 14, 71, 96, 98, 97, 2, 64, 66, 42, 22, 35, 86, 24, 34, 87, 21, 99, 0, 88, 27,
    18, 94, 11, 12, 47, 25, 30, 46, 62, 69, 36, 61, 7, 63, 75, 5, 32, 4, 51, 48, 73, 93, 39, 67,
    29, 49, 57, 33]
SELECTION_SEED = 0  # the official IMBALANCECIFAR100's rand_number
CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4866, 0.4409), (0.2009, 0.1984, 0.2023)


def _unpickle(root: Path, part: str) -> dict:
    with open(root / FOLDER / part, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _split(root: Path, part: str) -> tuple[np.ndarray, torch.Tensor]:
    """Images (N, 32, 32, 3) uint8 and fine labels (N,) of the ``train`` or ``test`` file."""
    entry = _unpickle(root, part)
    images = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), torch.as_tensor(entry[b"fine_labels"])


def long_tail_counts(num_images: int, num_classes: int, ratio: float) -> list[int]:
    """Training images kept per class: ``int(n_max * (1/ratio)^(c/(C-1)))`` with ``n_max`` the
    mean per-class count, in Python floats as the official code computes it."""
    n_max = num_images / num_classes
    return [int(n_max * (1 / ratio) ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def seeded_subset(labels: np.ndarray, counts: list[int], seed: int = SELECTION_SEED
                  ) -> np.ndarray:
    """Indices of the kept images, class by class (ascending class id): a legacy numpy
    generator seeded ``seed`` shuffles each class's indices in turn, the first ``counts[c]``
    are kept (in shuffled order, which is the pool order the per-class hold-out relies on)."""
    generator = np.random.RandomState(seed)
    kept = []
    for c, n in zip(np.unique(labels), counts):
        members = np.nonzero(labels == c)[0]
        generator.shuffle(members)
        kept.append(members[:n])
    return np.concatenate(kept)


def cifar_transforms(size: int) -> dict:
    """Pad 4, random resized crop and flip in training, the official statistics; images are
    resized first when ``size`` is not 32. (The official evaluation pads 4 then centre-crops
    32, which gives back the image: it is left out.)"""
    resize = [] if size == 32 else [T.Resize((size, size))]
    train = resize + [T.Pad(4), T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    return normalised(train, resize, CIFAR_MEAN, CIFAR_STD)


def class_order(order: str, seed: int) -> torch.Tensor:
    """CIFAR class ids in arrival order for option ``order``."""
    if order == "official":
        return torch.tensor(OFFICIAL_ORDER)
    return arrival_order(len(OFFICIAL_ORDER), order, "ordered", seed)


def build_cifar100lt(name, data_root=None, image_size=None):
    opts = name.options
    root = datasets()["cifar100lt"].locate(data_root)
    class_names = [n.decode() for n in _unpickle(root, "meta")[b"fine_label_names"]]
    num_classes = len(class_names)
    x_train, l_train = _split(root, "train")
    x_test, l_test = _split(root, "test")
    counts = long_tail_counts(len(l_train), num_classes, opts["ratio"])
    kept = torch.as_tensor(seeded_subset(l_train.numpy(), counts))
    order = class_order(opts["order"], opts["data_seed"])
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
