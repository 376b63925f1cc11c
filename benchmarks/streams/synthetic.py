"""A synthetic multi-label stream for scale tests (``synthetic``), generated on the fly.

Class ``c`` (frequency rank ``c``) is present in an image with probability
``0.5 * ratio^(-c/(C-1))``; an image with no class gets one drawn from those
probabilities. Each class owns a fixed random 8x8 RGB template; an image is the sum of its
classes' templates, each scaled by a per-image random factor in [0.5, 1.5], upsampled to
``size`` x ``size`` (or the ``image_size`` override), plus one of 16 fixed Gaussian noise
fields. Images are generated on access, a whole batch in one go (``pool.take``), so memory
stays flat; only the labels and scale factors are held. Everything is seeded by
``data_seed``. Class order: a permutation seeded by ``data_seed``. Any protocol that
divides ``classes`` is valid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from . import StreamData, register
from .base import StreamInfo, multilabel_sets, session_splits
from .images import MLCIL_RECIPE, recipe

TEMPLATE = 8
NOISE_FIELDS = 16
RECIPE = dict(MLCIL_RECIPE, backbone="resnet50", epochs=1, lr=1e-4, num_workers=4)


class SyntheticPool(Dataset):
    """Images of one split, generated from ``presence`` (N, C) (dataset class ids), the class
    ``templates`` (C, 3, 8, 8), and per-image scale factors and noise fields drawn from
    ``gen``."""

    def __init__(self, presence: torch.Tensor, templates: torch.Tensor, size: int,
                 gen: torch.Generator):
        self.weights = presence * (0.5 + torch.rand(presence.shape, generator=gen))
        self.templates = templates
        self.noise = 0.5 * torch.randn(NOISE_FIELDS, 3, size, size, generator=gen)
        self.size = size

    def __len__(self):
        return len(self.weights)

    def __getitem__(self, i):
        return self.take(torch.tensor([int(i)]))[0]

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The images at ``index`` (B, 3, size, size), generated as one batch."""
        pattern = torch.einsum("bc,cjhw->bjhw", self.weights[index], self.templates)
        images = F.interpolate(pattern, size=(self.size, self.size), mode="bilinear",
                               align_corners=False)
        return images + self.noise[index % NOISE_FIELDS]


def _presence(n: int, probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, C) class presence drawn with ``probs``; empty rows get one class from ``probs``."""
    presence = torch.rand(n, len(probs), generator=gen) < probs
    fallback = torch.multinomial(probs, n, replacement=True, generator=gen)
    empty = torch.nonzero(~presence.any(1)).flatten()
    presence[empty, fallback[empty]] = True
    return presence


@register("synthetic", label_mode="multi", num_classes=lambda o: o["classes"],
          protocols=["B0-C5", "B10-C5"],
          options={"classes": 20, "size": 64, "train": 2000, "test": 500, "data_seed": 0,
                   "ratio": 10.0},
          limits={"classes": (2, 1000), "size": (8, 4096), "train": (1, None),
                  "test": (1, None), "ratio": (1, 1000)},
          recipe=RECIPE, embedded=True,
          pool_bytes=lambda o: 2 * NOISE_FIELDS * 3 * o["size"] ** 2 * 4
          + (o["train"] + o["test"]) * o["classes"] * 8,
          description="generated long-tailed multi-label images for scale tests (offline)")
def build_synthetic(name, data_root=None, image_size=None):
    opts = name.options
    num_classes, size, seed = opts["classes"], opts["size"], opts["data_seed"]
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, 3, TEMPLATE, TEMPLATE, generator=gen)
    probs = 0.5 * opts["ratio"] ** (-torch.arange(num_classes) / max(num_classes - 1, 1))
    p_train, p_test = _presence(opts["train"], probs, gen), _presence(opts["test"], probs, gen)
    order = torch.randperm(num_classes, generator=gen)
    y_train, y_test = p_train[:, order].float(), p_test[:, order].float()
    sessions = session_splits(num_classes, name.base, name.inc)
    cfg = recipe(dict(RECIPE, image_size=size), image_size)
    info = StreamInfo(str(name), "multi", [str(int(c)) for c in order], order.tolist(),
                      sessions, y_train.sum(0).long().tolist(), cfg)
    train_pool = SyntheticPool(p_train.float(), templates, cfg["image_size"], gen)
    test_pool = SyntheticPool(p_test.float(), templates, cfg["image_size"], gen)
    return StreamData(info, multilabel_sets(train_pool, y_train, sessions, None, True),
                      multilabel_sets(test_pool, y_test, sessions, None, False), y_train)
