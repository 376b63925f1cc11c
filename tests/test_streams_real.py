"""Tests for the coco, voc, cifar100lt and synthetic streams on tiny fake datasets."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import benchmarks.streams as streams
from benchmarks.streams import StreamError
from benchmarks.streams.cifar100lt import long_tail_counts

# ---------------------------------------------------------------- fake datasets

# COCO category ids deliberately not in alphabetical order of their names.
COCO_CATEGORIES = {1: "person", 2: "bicycle", 3: "car", 5: "airplane"}
# image id -> [(category id, iscrowd)]
COCO_TRAIN = {10: [(1, 0), (3, 0)], 11: [(5, 0)], 12: [(2, 0), (1, 1)], 13: [(3, 1)],
              14: [(5, 0), (1, 0)], 15: []}
COCO_VAL = {20: [(2, 0)], 21: [(1, 0)], 22: [(5, 0), (3, 0)], 23: [(1, 1)]}
COCO_VAL_LABELS = {"20": {"bicycle"}, "21": {"person"}, "22": {"airplane", "car"}}  # 23 dropped

# VOC image id -> [(class name, difficult)]
VOC_TRAINVAL = {"000001": [("dog", 0), ("person", 1)],
                "000002": [("cat", 0), ("bicycle", 0), ("aeroplane", 0)],
                "000003": [("car", 1)],
                "000004": [("person", 0), ("chair", 0)],
                "000005": [("sheep", 0), ("person", 0)]}
VOC_TEST = {"000010": [("aeroplane", 0)], "000011": [("sofa", 0), ("dog", 1)],
            "000012": [("train", 0)]}

CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS = 10, 3
CIFAR_LT_PER_CLASS = 100  # enough for ratio 100 to keep an image of every class


def _image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 255 - value, 128)).save(path)


def _coco_json(path: Path, images: dict, folder: str) -> None:
    anns = [{"id": 100 * img + k, "image_id": img, "category_id": cat, "iscrowd": crowd,
             "bbox": [0, 0, 1, 1], "area": 1.0}
            for img, objs in images.items() for k, (cat, crowd) in enumerate(objs)]
    data = {"images": [{"id": img, "file_name": f"{img}.jpg"} for img in images],
            "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in COCO_CATEGORIES.items()]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    for img in images:
        _image(path.parent.parent / folder / f"{img}.jpg", img)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    _coco_json(root / "annotations" / "instances_train2014.json", COCO_TRAIN, "train2014")
    _coco_json(root / "annotations" / "instances_val2014.json", COCO_VAL, "val2014")
    return root


def _voc_xml(objects) -> str:
    body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>"
                   for n, d in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


@pytest.fixture(scope="module")
def voc_devkit(tmp_path_factory):
    """A folder holding VOCdevkit/VOC2007."""
    top = tmp_path_factory.mktemp("voc")
    voc = top / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for split, images in (("trainval", VOC_TRAINVAL), ("test", VOC_TEST)):
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(images) + "\n")
        for k, (image_id, objects) in enumerate(images.items()):
            (voc / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(objects))
            _image(voc / "JPEGImages" / f"{image_id}.jpg", 10 * k)
    return top


def _cifar_part(per_class: int, gen: np.random.Generator) -> dict:
    """Classes interleaved in the file; pixels encode (class, rank within its class)."""
    labels = gen.permutation(np.repeat(np.arange(100), per_class))
    rank = np.empty_like(labels)
    rank[np.argsort(labels, kind="stable")] = np.tile(np.arange(per_class), 100)
    data = np.zeros((len(labels), 3, 32, 32), dtype=np.uint8)
    data[:, 0], data[:, 1] = labels[:, None, None], rank[:, None, None]
    return {b"data": data.reshape(len(labels), -1), b"fine_labels": labels.tolist()}


def _cifar_folder(root: Path, train_per_class: int) -> Path:
    """A fake CIFAR-100 in torchvision's python layout under ``root``."""
    folder = root / "cifar-100-python"
    folder.mkdir()
    gen = np.random.default_rng(0)
    parts = {"train": _cifar_part(train_per_class, gen),
             "test": _cifar_part(CIFAR_TEST_PER_CLASS, gen),
             "meta": {b"fine_label_names": [f"c{c:02d}".encode() for c in range(100)]}}
    for name, content in parts.items():
        (folder / name).write_bytes(pickle.dumps(content))
    return root


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return _cifar_folder(tmp_path_factory.mktemp("cifar"), CIFAR_TRAIN_PER_CLASS)


@pytest.fixture(scope="module")
def cifar_lt_root(tmp_path_factory):
    return _cifar_folder(tmp_path_factory.mktemp("cifar_lt"), CIFAR_LT_PER_CLASS)


# ---------------------------------------------------------------- helpers

def _named(dataset, info) -> dict:
    """{image file stem: set of class names with a positive target} of a LabelledSet."""
    return {Path(dataset.pool.paths[int(i)]).stem:
            {info.class_names[j] for j in torch.nonzero(t).flatten().tolist()}
            for i, t in zip(dataset.index, dataset.targets)}


def _check_multilabel_blocks(built, empty_rows=False):
    """Training targets and masks cover only the session's classes; test labels are full;
    every row has a positive unless ``empty_rows`` (membership-only annotations)."""
    info, bench = built.info, built.benchmark
    for t, classes in enumerate(info.sessions):
        block = torch.zeros(info.num_classes, dtype=torch.bool)
        block[classes] = True
        train = bench.train_stream[t].dataset
        assert (train.mask == block).all()
        assert (train.targets[:, ~block] == 0).all()
        assert empty_rows or (train.targets[:, block].sum(1) > 0).all()
        assert (train.session == t).all()
        test = bench.test_stream[t].dataset
        assert test.mask.all()
        seen = info.seen_after(t)
        assert empty_rows or (test.targets[:, :seen].sum(1) > 0).all()


def _sessions(built, stream: str) -> list[dict]:
    return [_named(e.dataset, built.info) for e in getattr(built.benchmark, stream)]


# ---------------------------------------------------------------- COCO

def test_coco_crowd_annotations_count_for_membership_with_zero_rows(coco_root):
    built = streams.build("coco:B0-C2", str(coco_root))  # crowd=include, the default
    assert built.info.class_counts == [2, 1, 1, 2]  # labels come from non-crowd objects
    assert _sessions(built, "train_stream") == [
        {"11": {"airplane"}, "12": {"bicycle"}, "14": {"airplane"}},
        # 12's person and 13's car are crowd: members of the session, all-zero rows there
        {"10": {"car", "person"}, "12": set(), "13": set(), "14": {"person"}},
    ]
    assert _sessions(built, "test_stream") == [
        {"20": {"bicycle"}, "22": {"airplane", "car"}}, {**COCO_VAL_LABELS, "23": set()}]
    _check_multilabel_blocks(built, empty_rows=True)
    with pytest.raises(StreamError, match="option crowd='keep' for 'coco' must be one of: include, drop"):
        streams.check("coco:B0-C2?crowd=keep", str(coco_root))


def test_coco_alphabetical_order_crowd_dropped_and_sessions(coco_root):
    built = streams.build("coco:B0-C2?crowd=drop", str(coco_root), image_size=16)
    info = built.info
    assert info.class_names == ["airplane", "bicycle", "car", "person"]
    assert info.class_order == [0, 1, 2, 3]
    assert info.sessions == [[0, 1], [2, 3]]
    # image 12's person and image 13's car are crowd: ignored (13 and 15 are dropped)
    assert info.class_counts == [2, 1, 1, 2]
    assert _sessions(built, "train_stream") == [
        {"11": {"airplane"}, "12": {"bicycle"}, "14": {"airplane"}},
        {"10": {"car", "person"}, "14": {"person"}},  # 14 in both sessions, other block
    ]
    assert _sessions(built, "test_stream") == [
        {"20": {"bicycle"}, "22": {"airplane", "car"}}, COCO_VAL_LABELS]
    _check_multilabel_blocks(built)
    assert built.benchmark.train_stream[0].dataset[0][0].shape == (3, 16, 16)
    assert built.benchmark.test_stream[1].dataset[2][0].shape == (3, 16, 16)
    assert info.recipe["image_size"] == 16 and info.recipe["memory"] == 20


def test_coco_shuffled_order_is_seeded_and_keeps_labels(coco_root):
    built = streams.build("coco:B0-C2?order=shuffled&data_seed=3&crowd=drop", str(coco_root))
    expected = torch.randperm(4, generator=torch.Generator().manual_seed(3)).tolist()
    alphabetical = ["airplane", "bicycle", "car", "person"]
    assert built.info.class_order == expected
    assert built.info.class_names == [alphabetical[c] for c in expected]
    assert _sessions(built, "test_stream")[-1] == COCO_VAL_LABELS
    _check_multilabel_blocks(built)


def test_coco_protocol_must_divide_the_file_categories(coco_root):
    with pytest.raises(StreamError, match="does not divide 4 classes"):
        streams.build("coco:B0-C8", str(coco_root))


# ---------------------------------------------------------------- VOC

@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_voc_accepts_the_three_layouts(voc_devkit, sub):
    streams.check("voc:B0-C4", str(voc_devkit / sub))
    built = streams.build("voc:B0-C4", str(voc_devkit / sub), image_size=12)
    assert _sessions(built, "train_stream")[0] == {"000002": {"aeroplane", "bicycle"}}


def test_voc_difficult_ignored_and_sessions(voc_devkit):
    built = streams.build("voc:B0-C4", str(voc_devkit), image_size=12)
    info = built.info
    assert info.class_names[:4] == ["aeroplane", "bicycle", "bird", "boat"]
    assert info.class_order == list(range(20))
    assert _sessions(built, "train_stream") == [
        {"000002": {"aeroplane", "bicycle"}},
        {"000002": {"cat"}},
        {"000001": {"dog"}, "000004": {"chair"}},  # 000001's person is difficult
        {"000004": {"person"}, "000005": {"person"}},
        {"000005": {"sheep"}},
    ]
    # 000011's dog is difficult: it only shows up once sofa is seen; 000003 is nowhere
    assert _sessions(built, "test_stream") == [{"000010": {"aeroplane"}}] * 4 + [
        {"000010": {"aeroplane"}, "000011": {"sofa"}, "000012": {"train"}}]
    _check_multilabel_blocks(built)
    assert sum(info.class_counts) == 8 and info.class_counts[14] == 2  # person
    assert built.benchmark.train_stream[2].dataset[1][0].shape == (3, 12, 12)
    assert info.recipe["memory"] == 2


# ---------------------------------------------------------------- CIFAR-100-LT

def _expected_counts(ratio):
    return [int(CIFAR_TRAIN_PER_CLASS * (1 / ratio) ** (c / 99)) for c in range(100)]


def test_cifar_long_tail_ordered(cifar_root):
    built = streams.build("cifar100lt:B50-C10?order=ordered&ratio=5", str(cifar_root))
    info = built.info
    assert info.class_order == list(range(100))
    assert info.class_names[:2] == ["c00", "c01"]
    assert info.class_counts == _expected_counts(5.0)
    assert info.sessions[0] == list(range(50)) and len(info.sessions) == 6
    bench = built.benchmark
    for t, classes in enumerate(info.sessions):
        train = bench.train_stream[t].dataset
        assert set(train.targets.tolist()) == set(classes)
        assert len(train) == sum(info.class_counts[c] for c in classes)
        test = bench.test_stream[t].dataset
        assert len(test) == CIFAR_TEST_PER_CLASS * info.seen_after(t)  # balanced test
    image, target, mask, session = bench.train_stream[1].dataset[0]
    assert image.shape == (3, 32, 32) and mask.sum() == 10 and session == 1


def test_cifar_official_order_gives_the_official_session_sizes():
    """The official B0-C10 session sizes of the full CIFAR-100 (500 images a class)."""
    from benchmarks.streams.cifar100lt import OFFICIAL_ORDER
    counts = long_tail_counts(50_000, 100, 100.0)
    sizes = [sum(counts[OFFICIAL_ORDER[p]] for p in s)
             for s in streams.session_splits(100, 0, 10)]
    assert sizes == [655, 1203, 1208, 1325, 853, 891, 1322, 1350, 1494, 546]
    assert sorted(OFFICIAL_ORDER) == list(range(100))


def test_cifar_shuffled_order_spreads_classes(cifar_root):
    built = streams.build("cifar100lt:B0-C10?order=shuffled&data_seed=2", str(cifar_root),
                          image_size=40)
    info = built.info
    order = torch.randperm(100, generator=torch.Generator().manual_seed(2)).tolist()
    assert info.class_order == order
    assert info.class_names == [f"c{c:02d}" for c in order]
    expected = _expected_counts(100.0)
    assert info.class_counts == [expected[c] for c in order]
    train = built.benchmark.train_stream[3].dataset
    cifar_class = torch.as_tensor(train.pool.images[train.index.numpy(), 0, 0, 0]).long()
    assert (torch.tensor(order)[train.targets] == cifar_class).all()
    assert train[0][0].shape == (3, 40, 40)


def test_cifar_valid_by_needs_a_choice_and_a_split(cifar_root):
    with pytest.raises(StreamError, match="option valid_by='tail' for 'cifar100lt' must be one of: image, class"):
        streams.check("cifar100lt:B0-C5?valid=0.1&valid_by=tail", str(cifar_root))
    with pytest.raises(StreamError, match="valid_by=class in .* needs a validation split"):
        streams.check("cifar100lt:B0-C5?valid_by=class", str(cifar_root))


# The official selection and split, transcribed from JiangpengHe/imbalanced_cil
# (src/datasets/data_loader.py: IMBALANCECIFAR100; src/datasets/memory_dataset.py: get_data,
# the training and validation part) to compare with the suite on the same fake files.

def _official_imbalance(data, targets, imb_factor=0.01, rand_number=0, cls_num=100):
    np.random.seed(rand_number)
    img_max = len(data) / cls_num
    img_num_per_cls = []
    for cls_idx in range(cls_num):
        num = img_max * (imb_factor**(cls_idx / (cls_num - 1.0)))
        img_num_per_cls.append(int(num))
    new_data = []
    new_targets = []
    targets_np = np.array(targets, dtype=np.int64)
    classes = np.unique(targets_np)
    for the_class, the_img_num in zip(classes, img_num_per_cls):
        idx = np.where(targets_np == the_class)[0]
        np.random.shuffle(idx)
        selec_idx = idx[:the_img_num]
        new_data.append(data[selec_idx, ...])
        new_targets.extend([the_class, ] * the_img_num)
    return np.vstack(new_data), new_targets


def _official_get_data(trn_data, num_tasks, nc_first_task, validation, class_order):
    import random
    data = {}
    num_classes = len(class_order)
    class_order = class_order.copy()
    remaining_classes = num_classes - nc_first_task
    cpertask = np.array([nc_first_task] + [remaining_classes // (num_tasks - 1)] * (num_tasks - 1))
    for i in range(remaining_classes % (num_tasks - 1)):
        cpertask[i + 1] += 1
    cpertask_cumsum = np.cumsum(cpertask)
    init_class = np.concatenate(([0], cpertask_cumsum[:-1]))
    for tt in range(num_tasks):
        data[tt] = {}
        data[tt]['trn'] = {'x': [], 'y': []}
        data[tt]['val'] = {'x': [], 'y': []}
    for this_image, this_label in zip(trn_data['x'], trn_data['y']):
        this_label = class_order.index(this_label)
        this_task = (this_label >= cpertask_cumsum).sum()
        data[this_task]['trn']['x'].append(this_image)
        data[this_task]['trn']['y'].append(this_label - init_class[this_task])
    for tt in range(num_tasks):
        data[tt]['ncla'] = len(np.unique(data[tt]['trn']['y']))
    if validation > 0.0:
        for tt in data.keys():
            for cc in range(data[tt]['ncla']):
                cls_idx = list(np.where(np.asarray(data[tt]['trn']['y']) == cc)[0])
                if int(np.round(len(cls_idx) * validation)) == 0:
                    rnd_img = [0]
                else:
                    rnd_img = random.sample(cls_idx, int(np.round(len(cls_idx) * validation)))
                rnd_img.sort(reverse=True)
                for ii in range(len(rnd_img)):
                    data[tt]['val']['x'].append(data[tt]['trn']['x'][rnd_img[ii]])
                    data[tt]['val']['y'].append(data[tt]['trn']['y'][rnd_img[ii]])
                    data[tt]['trn']['x'].pop(rnd_img[ii])
                    data[tt]['trn']['y'].pop(rnd_img[ii])
    return data, init_class


def _official_sessions(root: Path, num_tasks, nc_first_task, validation, class_order, seed=0):
    """The official training and validation images of each task, as sorted lists of
    (CIFAR class, rank in the fake file, label within the task); the global generators are
    seeded as main_incremental.py does before building the loaders, and restored after."""
    import random
    with open(root / "cifar-100-python" / "train", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    x = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    states = random.getstate(), np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(seed)
        images, labels = _official_imbalance(x, entry[b"fine_labels"])
        data, _ = _official_get_data({"x": images, "y": labels}, num_tasks, nc_first_task,
                                     validation, class_order)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    return [{split: sorted((int(i[0, 0, 0]), int(i[0, 0, 1]), int(y))
                           for i, y in zip(data[t][split]['x'], data[t][split]['y']))
             for split in ("trn", "val")} for t in range(num_tasks)]


def _suite_rows(dataset, info, t):
    """A session's samples as the official lists: (CIFAR class, rank, label within task)."""
    pixels = dataset.pool.images[dataset.index.numpy(), 0, 0]
    first = info.sessions[t][0]
    return sorted((int(p[0]), int(p[1]), int(y) - first)
                  for p, y in zip(pixels, dataset.targets.tolist()))


@pytest.mark.parametrize("protocol, order, tasks, first", [
    ("B0-C5", "official", 20, 5), ("B50-C5", "official", 11, 50), ("B0-C5", "ordered", 20, 5)])
@pytest.mark.parametrize("valid", [0.0, 0.1])
def test_cifar_sessions_hold_the_official_images(cifar_lt_root, protocol, order, tasks, first,
                                                 valid):
    from benchmarks.streams.cifar100lt import OFFICIAL_ORDER
    class_order = OFFICIAL_ORDER if order == "official" else list(range(100))
    official = _official_sessions(cifar_lt_root, tasks, first, valid, class_order)
    query = f"?order={order}" + (f"&valid={valid}&valid_by=class" if valid else "")
    built = streams.build(f"cifar100lt:{protocol}{query}", str(cifar_lt_root))
    info, bench = built.info, built.benchmark
    assert info.class_order == class_order and len(info.sessions) == tasks
    held = []
    for t in range(tasks):
        assert _suite_rows(bench.train_stream[t].dataset, info, t) == official[t]["trn"]
        if valid:  # validation experience t: every held-out image of a class seen by t
            held += [(c, r, y + info.sessions[t][0]) for c, r, y in official[t]["val"]]
            assert _suite_rows(bench.valid_stream[t].dataset, info, 0) == sorted(held)
    kept = [row for t in range(tasks) for row in official[t]["trn"]]
    assert sum(info.class_counts) == len(kept)


def test_cifar_transforms_are_the_official_ones(cifar_root):
    from torchvision import transforms as T
    official = dict(mean=(0.5071, 0.4866, 0.4409), std=(0.2009, 0.1984, 0.2023))
    train = T.Compose([T.Pad(4), T.RandomResizedCrop(32), T.RandomHorizontalFlip(),
                       T.ToTensor(), T.Normalize(**official)])
    test = T.Compose([T.Pad(4), T.CenterCrop(32), T.ToTensor(), T.Normalize(**official)])
    built = streams.build("cifar100lt:B0-C10", str(cifar_root))
    data = built.benchmark.train_stream[0].dataset
    image = data.pool[int(data.index[0])]
    torch.manual_seed(3)
    ours = data[0][0]
    torch.manual_seed(3)
    assert torch.equal(ours, train(image))
    evaluated = built.benchmark.test_stream[0].dataset
    assert torch.equal(evaluated[0][0], test(evaluated.pool[int(evaluated.index[0])]))


# ---------------------------------------------------------------- synthetic

def test_synthetic_sizes_and_determinism():
    name = "synthetic:B0-C5?classes=10&train=60&test=30&size=16&data_seed=4"
    a, b = streams.build(name), streams.build(name)
    assert a.info.class_order == b.info.class_order
    assert len(a.info.sessions) == 2 and a.info.num_classes == 10
    pool = a.benchmark.train_stream[0].dataset.pool
    assert len(pool) == 60 and len(a.benchmark.test_stream[0].dataset.pool) == 30
    assert torch.equal(pool[7], pool[7])
    assert torch.equal(pool[7], b.benchmark.train_stream[0].dataset.pool[7])
    assert not torch.equal(pool[7], pool[8])
    assert pool[7].shape == (3, 16, 16)
    _check_multilabel_blocks(a)
    assert len(a.benchmark.test_stream[-1].dataset) == 30  # every image has a label
    resized = streams.build(name, image_size=24)
    assert resized.benchmark.test_stream[0].dataset[0][0].shape == (3, 24, 24)
    assert resized.info.recipe["image_size"] == 24


# ---------------------------------------------------------------- missing data

@pytest.mark.parametrize("stream, layout", [
    ("coco:B40-C10", "annotations/instances_{train,val}2014.json"),
    ("voc:B0-C4", "VOC2007/{Annotations"),
    ("cifar100lt:B0-C10", "cifar-100-python/{train,test,meta}"),
])
def test_missing_data_is_a_clear_error(tmp_path, stream, layout):
    for call in (streams.check, streams.build):
        with pytest.raises(StreamError, match="nothing is downloaded") as err:
            call(stream, str(tmp_path))
        assert layout in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StreamError, match="no data root given"):
        streams.check(stream)


def test_bad_order_option_is_rejected_by_check(coco_root):
    with pytest.raises(StreamError, match="order='random'"):
        streams.check("coco:B0-C2?order=random", str(coco_root))


def test_a_coco_grid_from_scratch_is_warned_about(coco_root, tmp_path, capsys):
    import fake_cell
    from benchmarks.run import main

    toy = str(Path(__file__).with_name("toy_methods.py"))
    argv = ["--methods", "toy", "--plugin", toy, "--streams", "coco:B0-C2", "--seeds", "0",
            "--data-root", str(coco_root), "--out", str(tmp_path / "a")]
    assert main(argv, cell=fake_cell.run_cell) == 0
    assert "warning: coco:B0-C2 trains its backbone from scratch" in capsys.readouterr().err
    import torch
    from benchmarks import models

    weights = tmp_path / "w.pt"  # real weights: a file that is no checkpoint is refused
    torch.save(models.build("smallcnn", 1, 3).backbone.state_dict(), weights)
    assert main([*argv[:-1], str(tmp_path / "b"), "--pretrained", str(weights),
                 "--backbone", "smallcnn"],
                cell=fake_cell.run_cell) == 0
    assert "from scratch" not in capsys.readouterr().err
