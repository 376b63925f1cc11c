"""The embedded offline streams, composed from scikit-learn's handwritten digits.

``digits`` (multi-label): 24x24 canvases, a 3x3 grid of 8x8 slots holding 1 to 4 distinct
digits. Each class is present independently with probability 0.5 * ratio^(-r/9), r its
frequency rank (a seeded permutation), so head classes show up ``ratio`` times more often
than tail classes; canvases with no digit or more than 4 are discarded.
``digits-lt`` (single-label): one digit per canvas, n_r = n_max * ratio^(-r/9) training
samples for frequency rank r, a balanced test set.

Train and test canvases are composed from disjoint halves of the 1,797 source digits. All
content (source split, class order, frequency ranks, canvases) is fixed by ``data_seed``.
"""
from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from . import StreamData
from .base import (StreamInfo, TensorPool, multilabel_sets, positions, session_splits,
                   singlelabel_sets)
from .catalog import DIGITS_CLASSES as NUM_CLASSES
from .catalog import DIGITS_RECIPE as RECIPE
from .catalog import DIGITS_SIZE as SIZE
from .images import resized

GRID, CELL = 3, 8


def _stream(name, label_mode, order, train, test, counts, image_size) -> StreamData:
    """StreamData from (images, labels) of each split, labels in arrival order."""
    sessions = session_splits(NUM_CLASSES, name.base, name.inc)
    recipe, tf = resized(RECIPE, image_size)
    info = StreamInfo(str(name), label_mode, [str(int(c)) for c in order], order.tolist(),
                      sessions, counts, recipe)
    make_sets = multilabel_sets if label_mode == "multi" else singlelabel_sets
    (x_train, y_train), (x_test, y_test) = train, test
    return StreamData(info, make_sets(TensorPool(x_train), y_train, sessions, tf, True),
                      make_sets(TensorPool(x_test), y_test, sessions, tf, False), y_train)


def _source_split(gen):
    """Source digits (N, 8, 8) in [0, 1] and labels, split in two disjoint halves."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(labels), generator=gen)
    half = len(perm) // 2
    return (images[perm[:half]], labels[perm[:half]]), (images[perm[half:]], labels[perm[half:]])


def _compose(presence, source, gen):
    """Canvases (N, 1, 24, 24) showing, in random distinct slots, one random source digit
    of each class marked in ``presence`` (N, 10)."""
    images, labels = source
    n = len(presence)
    slots = torch.rand(n, GRID * GRID, generator=gen).argsort(1)
    rows, classes = torch.nonzero(presence, as_tuple=True)
    rank = (presence.long().cumsum(1) - 1)[rows, classes]
    slot = slots[rows, rank]
    # a random source digit of each placed class
    by_class = [torch.nonzero(labels == c).flatten() for c in range(NUM_CLASSES)]
    sizes = torch.tensor([len(b) for b in by_class])
    pick = (torch.rand(len(classes), generator=gen) * sizes[classes]).long()
    starts = torch.cumsum(sizes, 0) - sizes
    src = torch.cat(by_class)[starts[classes] + pick]
    canvas = torch.zeros(n, GRID, GRID, CELL, CELL)
    canvas[rows, slot // GRID, slot % GRID] = images[src]
    return canvas.permute(0, 1, 3, 2, 4).reshape(n, 1, SIZE, SIZE)


def _draw_setup(data_seed):
    """The seeded generator, the two source halves, the class order (dataset ids in arrival
    order) and each class's frequency rank."""
    gen = torch.Generator().manual_seed(data_seed)
    train_src, test_src = _source_split(gen)
    order = torch.randperm(NUM_CLASSES, generator=gen)
    rank = torch.randperm(NUM_CLASSES, generator=gen)
    return gen, train_src, test_src, order, rank


def _multilabel_canvases(n, ratio, source, gen, rank):
    probs = 0.5 * ratio ** (-rank.float() / (NUM_CLASSES - 1))
    kept = []
    while sum(len(k) for k in kept) < n:
        draw = torch.rand(4 * n, NUM_CLASSES, generator=gen) < probs
        counts = draw.sum(1)
        kept.append(draw[(counts >= 1) & (counts <= 4)])
    presence = torch.cat(kept)[:n]
    return _compose(presence, source, gen), presence


def build_digits(name, data_root=None, image_size=None):
    opts = name.options
    gen, train_src, test_src, order, rank = _draw_setup(opts["data_seed"])
    x_train, p_train = _multilabel_canvases(opts["train"], opts["ratio"], train_src, gen, rank)
    x_test, p_test = _multilabel_canvases(opts["test"], opts["ratio"], test_src, gen, rank)
    # columns in arrival order
    y_train, y_test = p_train[:, order].float(), p_test[:, order].float()
    return _stream(name, "multi", order, (x_train, y_train), (x_test, y_test),
                   y_train.sum(0).long().tolist(), image_size)


def _singlelabel_canvases(counts, source, gen):
    labels = torch.repeat_interleave(torch.arange(NUM_CLASSES), counts)
    presence = torch.nn.functional.one_hot(labels, NUM_CLASSES).bool()
    return _compose(presence, source, gen), labels


def build_digits_lt(name, data_root=None, image_size=None):
    opts = name.options
    gen, train_src, test_src, order, rank = _draw_setup(opts["data_seed"])
    counts = (opts["n_max"] * opts["ratio"] ** (-rank.float() / (NUM_CLASSES - 1))).long()
    x_train, l_train = _singlelabel_canvases(counts.clamp(min=1), train_src, gen)
    x_test, l_test = _singlelabel_canvases(
        torch.full((NUM_CLASSES,), opts["test_per_class"]), test_src, gen)
    position = positions(order)
    y_train, y_test = position[l_train], position[l_test]
    return _stream(name, "single", order, (x_train, y_train), (x_test, y_test),
                   torch.bincount(y_train, minlength=NUM_CLASSES).tolist(), image_size)
