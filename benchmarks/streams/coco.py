"""MS-COCO 2014 as a multi-label class-incremental stream (``coco``).

Training images come from ``train2014``, evaluation images from ``val2014``, as in KRT
(Dong et al., ICCV 2023) and RebLL. An image's labels are the categories of its non-crowd
annotations. Crowd annotations (``iscrowd=1``), option ``crowd``:

- ``include`` (default, the published protocol of the reference code bases): they count for
  membership. An image whose only objects of a session's classes are crowd annotations is
  a member of that session (and of the test sets that hold the session's classes) with an
  all-zero target row there.
- ``drop``: they are ignored before anything else; an image with no other annotation is
  dropped.

Recipe: KRT's (``catalog.MLCIL_RECIPE``) for the incremental protocols, PSD's backbone and
image size for the offline one (``coco:B80``).

Class index: the categories of the training annotation file sorted alphabetically by name
(airplane, apple, backpack, ...), the label order of the MLCIL papers' released code; it is
also the published class order (``order=alphabetical``, the default). ``order=shuffled``
permutes the classes with ``data_seed``. Stream names are validated against COCO's 80
classes; the build uses the categories found in the file (so a protocol must divide
their number).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from . import datasets
from .catalog import COCO_SPLITS as SPLITS
from .catalog import MLCIL_RECIPE, PSD_RECIPE
from .images import Split, multilabel_stream

def _load(root: Path, split: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        return COCO(str(root / "annotations" / f"instances_{split}.json"))


def _categories(coco: COCO) -> tuple[list[str], dict[int, int]]:
    """Category names sorted alphabetically, and each COCO category id's index there."""
    cats = sorted(coco.dataset["categories"], key=lambda c: c["name"])
    return [c["name"] for c in cats], {c["id"]: i for i, c in enumerate(cats)}


def _split(root: Path, split: str, coco: COCO, index: dict[int, int], crowd: str) -> Split:
    """Image paths (sorted by image id) and the (row, class) pairs of the annotations, crowd
    ones for membership only (``crowd=include``) or left out (``drop``)."""
    image_ids = np.array(sorted(coco.imgs), dtype=np.int64)
    anns = coco.dataset["annotations"]
    is_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    if crowd == "drop":
        anns = [a for a, c in zip(anns, is_crowd) if not c]
        is_crowd = np.zeros(len(anns), dtype=bool)
    ann_images = np.array([a["image_id"] for a in anns], dtype=np.int64)
    ann_classes = np.array([index[a["category_id"]] for a in anns], dtype=np.int64)
    paths = [root / split / coco.imgs[i]["file_name"] for i in image_ids.tolist()]
    return Split(paths, np.searchsorted(image_ids, ann_images), ann_classes, is_crowd)


def build_coco(name, data_root=None, image_size=None):
    root = datasets()["coco"].locate(data_root)
    train_coco, val_coco = _load(root, SPLITS[0]), _load(root, SPLITS[1])
    class_names, index = _categories(train_coco)
    crowd = name.options["crowd"]
    train = _split(root, SPLITS[0], train_coco, index, crowd)
    test = _split(root, SPLITS[1], val_coco, index, crowd)
    return multilabel_stream(name, class_names, "alphabetical", train, test,
                             MLCIL_RECIPE if name.inc else PSD_RECIPE, image_size)
