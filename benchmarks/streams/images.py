"""Shared pieces of the image-file streams: pools, transforms, recipes, data checks and
the multi-label stream assembly used by ``coco`` and ``voc``."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from . import StreamData
from .base import StreamError, StreamInfo, multilabel_sets, positions, session_splits

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# The MLCIL training recipe of KRT's released code (TResNet-M at 224, Adam 4e-5, batch 64,
# 20 epochs, herding memory per class); what it leaves out of KRT's code is listed in README.
MLCIL_RECIPE = dict(backbone="timm:tresnet_m", image_size=224, epochs=20, optimizer="adam",
                    lr=4e-5, weight_decay=1e-4, batch_size=64, memory=20,
                    memory_mode="per_class", selection="herding", milestones=[],
                    num_workers=8, reset_optimizer=True)


class FilePool(Dataset):
    """Images on disk, opened lazily: ``pool[i]`` is the RGB PIL image of ``paths[i]``."""

    def __init__(self, paths: Sequence):
        # one numpy string array, not a list of objects, so DataLoader workers share it
        self.paths = np.asarray(paths, dtype=str)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            return image.convert("RGB")


class ArrayPool(Dataset):
    """Images held in memory as a uint8 array (N, H, W, 3); ``pool[i]`` is a PIL image."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return Image.fromarray(self.images[i])


def normalised(train_steps: list, eval_steps: list, mean, std) -> dict:
    """Transform groups: each list of PIL steps followed by ToTensor and Normalize."""
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    return {"train": T.Compose(train_steps + tail), "eval": T.Compose(eval_steps + tail)}


def image_transforms(size: int) -> dict:
    """Resize to ``size`` x ``size`` (random horizontal flip in training), ImageNet stats."""
    resize = T.Resize((size, size))
    return normalised([resize, T.RandomHorizontalFlip()], [resize], IMAGENET_MEAN, IMAGENET_STD)


def recipe(base: dict, image_size: Optional[int]) -> dict:
    """A copy of ``base``, its image size overridden when one is given."""
    return dict(base, image_size=image_size or base["image_size"])


def resized(base: dict, image_size: Optional[int]) -> tuple[dict, Optional[dict]]:
    """For tensor pools of ``base["image_size"]``: the recipe with the override, and Resize
    transform groups when the override changes the size (None otherwise)."""
    cfg = recipe(base, image_size)
    if cfg["image_size"] == base["image_size"]:
        return cfg, None
    resize = T.Resize((cfg["image_size"],) * 2, antialias=True)
    return cfg, {"train": resize, "eval": resize}


def locate(dataset: str, data_root: Optional[str], parts: Sequence[str], layout: str,
           subdirs: Sequence[str] = ("",)) -> Path:
    """The first folder ``data_root/sub`` holding every path of ``parts`` (existence checks
    only); otherwise a one-line StreamError naming what is missing and the expected layout."""
    if data_root is None:
        reason = "no data root given"
    else:
        root = Path(data_root).expanduser()
        for sub in subdirs:
            if all((root / sub / part).exists() for part in parts):
                return root / sub
        first = root / subdirs[0]
        reason = "missing " + str(next(first / p for p in parts if not (first / p).exists()))
    raise StreamError(f"{dataset} data not found ({reason}): expected {layout}; "
                      "nothing is downloaded, place the files there and pass --data-root")


def check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    """Raise StreamError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise StreamError(f"option {option}={value!r} must be one of: {', '.join(choices)}")


def arrival_order(num_classes: int, order: str, published: str, seed: int) -> torch.Tensor:
    """Dataset class ids in arrival order: the dataset's own order for ``published``, a
    permutation seeded by ``seed`` for ``shuffled``."""
    check_choice("order", order, (published, "shuffled"))
    if order == published:
        return torch.arange(num_classes)
    return torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))


class Split(NamedTuple):
    """One split of a multi-label dataset: image paths, its (image row, class id) pairs, and
    which pairs count for membership only (``member_only``, e.g. COCO crowd annotations;
    None: none do)."""

    paths: list
    rows: Sequence[int]
    classes: Sequence[int]
    member_only: Optional[Sequence[bool]] = None


def labelled_pool(split: Split, order: torch.Tensor
                  ) -> tuple[FilePool, torch.Tensor, torch.Tensor]:
    """The pool of the split's images showing at least one class, their multi-hot labels
    (N, C) with columns in arrival ``order``, and the classes each shows for membership
    (labels plus membership-only pairs)."""
    rows = torch.as_tensor(split.rows, dtype=torch.long)
    cols = positions(order)[torch.as_tensor(split.classes, dtype=torch.long)]
    only = torch.zeros(len(rows), dtype=torch.bool) if split.member_only is None else \
        torch.as_tensor(split.member_only, dtype=torch.bool)
    labels = torch.zeros(len(split.paths), len(order))
    labels[rows[~only], cols[~only]] = 1.0
    members = torch.zeros(len(split.paths), len(order), dtype=torch.bool)
    members[rows, cols] = True
    kept = torch.nonzero(members.any(1)).flatten()
    paths = np.asarray(split.paths, dtype=str)[kept.numpy()]
    return FilePool(paths), labels[kept], members[kept]


def multilabel_stream(name, class_names: list[str], published: str, train: Split, test: Split,
                      base_recipe: dict, image_size: Optional[int]) -> StreamData:
    """A multi-label stream from the train and test splits of an image-file dataset.

    The class order is option ``order`` (``published`` or ``shuffled`` with ``data_seed``);
    images showing no class are dropped.
    """
    opts = name.options
    order = arrival_order(len(class_names), opts["order"], published, opts["data_seed"])
    sessions = session_splits(len(class_names), name.base, name.inc)
    train_pool, y_train, m_train = labelled_pool(train, order)
    test_pool, y_test, m_test = labelled_pool(test, order)
    cfg = recipe(base_recipe, image_size)
    tf = image_transforms(cfg["image_size"])
    info = StreamInfo(str(name), "multi", [class_names[c] for c in order], order.tolist(),
                      sessions, y_train.sum(0).long().tolist(), cfg)
    return StreamData(info, multilabel_sets(train_pool, y_train, sessions, tf, True, m_train),
                      multilabel_sets(test_pool, y_test, sessions, tf, False, m_test), y_train)
