"""PASCAL VOC 2007 as a multi-label class-incremental stream (``voc``).

Training on ``trainval``, evaluation on ``test``, as in KRT and RebLL. An image's labels are
the classes of its objects read from the XML annotations; objects marked
``<difficult>1</difficult>`` are ignored (an image with only difficult objects is dropped).
The class order is VOC's standard (alphabetical) order (``order=standard``, the default) or a
permutation seeded by ``data_seed`` (``order=shuffled``).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from . import datasets
from .catalog import VOC_RECIPE as RECIPE
from .images import Split, multilabel_stream

CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
           "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
           "sofa", "train", "tvmonitor"]
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}


def _objects(xml_path: Path) -> list[int]:
    """Class indices of the non-difficult objects of one annotation file."""
    objects = ET.parse(xml_path).getroot().iterfind("object")
    return [CLASS_INDEX[o.findtext("name").strip()] for o in objects
            if o.findtext("difficult", "0").strip() != "1"]


def _split(voc: Path, split: str) -> Split:
    """Image paths of an ImageSets split and the (row, class) pairs of their objects."""
    ids = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    pairs = [(row, c) for row, image_id in enumerate(ids)
             for c in _objects(voc / "Annotations" / f"{image_id}.xml")]
    rows, classes = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    return Split([voc / "JPEGImages" / f"{i}.jpg" for i in ids], rows, classes)


def build_voc(name, data_root=None, image_size=None):
    voc = datasets()["voc"].locate(data_root)
    return multilabel_stream(name, CLASSES, "standard", _split(voc, "trainval"),
                             _split(voc, "test"), RECIPE, image_size)
