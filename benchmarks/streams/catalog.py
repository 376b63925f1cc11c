"""What every dataset accepts, in one torch-free place: protocols, options with their
defaults, choices and ranges, the data layout, the training recipe. The builders live in one
module per dataset (named by ``builder``) and are imported only to build a stream."""
from __future__ import annotations

from . import declare
from .names import Layout

# eval_batch_size 64: on a CPU the small CNN's forward pass is 3x faster per image at 64
# than at 256, whose activations overflow the cache (python -m benchmarks.perf, row 2).
# replay_batch "concat": the memory joins the session's data and batches are drawn from the
# union, as the long-tailed CIL code (FACIL) and PyCIL do (Avalanche's ReplayPlugin balances).
DIGITS_SIZE, DIGITS_CLASSES = 24, 10
DIGITS_RECIPE = dict(backbone="smallcnn", image_size=DIGITS_SIZE, epochs=4, optimizer="adam",
                     lr=2e-3, weight_decay=0.0, batch_size=64, eval_batch_size=64, memory=20,
                     memory_mode="per_class", selection="herding", milestones=[],
                     num_workers=0, reset_optimizer=True, replay_batch="concat")
# The MLCIL training recipe of KRT's released code (TResNet-M at 224, Adam 4e-5, batch 64,
# 20 epochs, herding memory per class); what it leaves out of KRT's code is listed in
# docs/streams.md.
MLCIL_RECIPE = dict(backbone="timm:tresnet_m", image_size=224, epochs=20, optimizer="adam",
                    lr=4e-5, weight_decay=1e-4, batch_size=64, memory=20,
                    memory_mode="per_class", selection="herding", milestones=[],
                    num_workers=8, reset_optimizer=True, replay_batch="concat")
# The offline protocol coco:B80 is PSD's (Xu et al., IJCAI 2022): its ResNet-101 at 448 px;
# the optimiser and schedule stay the MLCIL recipe's (PSD's were not checked).
PSD_RECIPE = dict(MLCIL_RECIPE, backbone="resnet101", image_size=448)
VOC_RECIPE = dict(MLCIL_RECIPE, memory=2)
SYNTHETIC_RECIPE = dict(MLCIL_RECIPE, backbone="resnet50", epochs=1, lr=1e-4, num_workers=4)
CIFAR_RECIPE = dict(backbone="resnet32", image_size=32, epochs=160, optimizer="sgd", lr=0.1,
                    weight_decay=5e-4, batch_size=128, memory=20, memory_mode="per_class",
                    selection="herding", milestones=[80, 120], num_workers=4,
                    reset_optimizer=True, replay_batch="concat")

COCO_SPLITS = ("train2014", "val2014")
VOC_FOLDER = "VOC2007"
CIFAR_FOLDER = "cifar-100-python"
VALID_BY = ("image", "class")  # how ``valid`` holds out: by image, or per class (single-label)


def _digits_bytes(images: int) -> int:
    """Memory for composing ``images`` float canvases (the canvas grid, its reordered copy and
    the pool itself)."""
    return 3 * images * DIGITS_SIZE * DIGITS_SIZE * 4


declare("digits", label_mode="multi", num_classes=DIGITS_CLASSES,
        protocols=["B0-C2", "B4-C2", "B0-C1"],
        builder="digits:build_digits",
        options={"data_seed": 0, "ratio": 10.0, "train": 3000, "test": 1000},
        limits={"ratio": (1, 1000), "train": (50, None), "test": (10, None)},
        recipe=DIGITS_RECIPE, channels=1, embedded=True,
        pool_bytes=lambda o: _digits_bytes(o["train"] + o["test"]),
        description="embedded multi-label digit canvases, long-tailed (offline)")

declare("digits-lt", label_mode="single", num_classes=DIGITS_CLASSES,
        protocols=["B0-C2", "B4-C2", "B0-C1"], builder="digits:build_digits_lt",
        options={"data_seed": 0, "ratio": 10.0, "n_max": 400, "test_per_class": 100},
        limits={"ratio": (1, 1000), "n_max": (1, None), "test_per_class": (1, None)},
        recipe=DIGITS_RECIPE, channels=1, embedded=True,
        pool_bytes=lambda o: _digits_bytes(DIGITS_CLASSES * (o["n_max"] + o["test_per_class"])),
        description="embedded single-label long-tailed digits (offline)")

declare("coco", label_mode="multi", num_classes=80, protocols=["B0-C10", "B40-C10"],
        builder="coco:build_coco",
        options={"order": "alphabetical", "data_seed": 0, "crowd": "include"},
        choices={"order": ("alphabetical", "shuffled"), "crowd": ("include", "drop")},
        layout=Layout([f"annotations/instances_{s}.json" for s in COCO_SPLITS]
                      + list(COCO_SPLITS),
                      "<data_root>/annotations/instances_{train,val}2014.json with images in "
                      "<data_root>/train2014/ and <data_root>/val2014/ (MS-COCO 2014)"),
        recipe=MLCIL_RECIPE, published_pretrained=True,
        description="MS-COCO 2014 multi-label (train2014 / val2014), pycocotools")

declare("voc", label_mode="multi", num_classes=20, protocols=["B0-C4", "B4-C2", "B10-C2"],
        builder="voc:build_voc", options={"order": "standard", "data_seed": 0},
        choices={"order": ("standard", "shuffled")},
        layout=Layout(["Annotations", "JPEGImages", "ImageSets/Main/trainval.txt",
                       "ImageSets/Main/test.txt"],
                      "<data_root>/VOC2007/{Annotations/*.xml, JPEGImages/*.jpg, "
                      "ImageSets/Main/trainval.txt, ImageSets/Main/test.txt} (<data_root> may "
                      "also be the VOC2007 folder itself or a folder holding "
                      "VOCdevkit/VOC2007)", (VOC_FOLDER, "", f"VOCdevkit/{VOC_FOLDER}")),
        recipe=VOC_RECIPE, published_pretrained=True,
        description="PASCAL VOC 2007 multi-label (trainval / test), XML annotations")

declare("cifar100lt", label_mode="single", num_classes=100, protocols=["B0-C5", "B50-C5"],
        builder="cifar100lt:build_cifar100lt",
        options={"ratio": 100.0, "order": "official", "data_seed": 0, "valid_by": "image"},
        choices={"order": ("official", "ordered", "shuffled"), "valid_by": VALID_BY},
        limits={"ratio": (1, 500)},
        layout=Layout([f"{CIFAR_FOLDER}/{part}" for part in ("train", "test", "meta")],
                      f"<data_root>/{CIFAR_FOLDER}/{{train,test,meta}} (the python version of "
                      "CIFAR-100, as torchvision.datasets.CIFAR100 stores it)"),
        recipe=CIFAR_RECIPE, pool_bytes=lambda o: 60_000 * 32 * 32 * 3,
        description="CIFAR-100-LT single-label as the official cifar100_lt scenario, "
                    "n_c = 500 * ratio^(-c/99), balanced test")

declare("synthetic", label_mode="multi", num_classes=lambda o: o["classes"],
        protocols=["B0-C5", "B10-C5"], builder="synthetic:build_synthetic",
        options={"classes": 20, "size": 64, "train": 2000, "test": 500, "data_seed": 0,
                 "ratio": 10.0},
        limits={"classes": (2, 1000), "size": (8, 4096), "train": (1, None),
                "test": (1, None), "ratio": (1, 1000)},
        recipe=SYNTHETIC_RECIPE, embedded=True,
        # 16 noise fields of size x size (held twice), plus labels and scales per image
        pool_bytes=lambda o: 2 * 16 * 3 * o["size"] ** 2 * 4
        + (o["train"] + o["test"]) * o["classes"] * 8,
        description="generated long-tailed multi-label images for scale tests (offline)")
