"""The embedded digits streams: content, partial labels, determinism, names."""
import pytest
import torch

from benchmarks import streams
from benchmarks.streams import StreamError
from benchmarks.streams.digits import CELL, GRID, _source_split

TINY = "digits:B0-C2?train=400&test=200"


@pytest.fixture(scope="module")
def tiny():
    return streams.build(TINY)


def full_train_labels(benchmark):
    """Full labels of every training image, from the last joint experience."""
    last = benchmark.joint_stream[len(benchmark.joint_stream) - 1].dataset
    return last.index, last.targets


def test_training_sessions_hold_every_image_of_their_classes_with_partial_labels(tiny):
    benchmark, info = tiny
    index, full = full_train_labels(benchmark)
    assert len(index) == 400
    for t, exp in enumerate(benchmark.train_stream):
        data, classes = exp.dataset, info.sessions[t]
        block = torch.zeros(info.num_classes, dtype=torch.bool)
        block[classes] = True
        expected = index[full[:, block].any(1)]
        assert torch.equal(data.index.sort().values, expected.sort().values)
        rows = full[torch.searchsorted(index, data.index)]
        assert torch.equal(data.targets, rows * block)  # zero outside the session
        assert torch.equal(data.mask, block.expand_as(data.mask))
        assert (data.session == t).all()


def test_an_image_with_classes_of_two_sessions_appears_in_both(tiny):
    benchmark, info = tiny
    first, second = benchmark.train_stream[0].dataset, benchmark.train_stream[1].dataset
    shared = set(first.index.tolist()) & set(second.index.tolist())
    assert shared
    i = shared.pop()
    a = first.targets[(first.index == i).nonzero()[0, 0]]
    b = second.targets[(second.index == i).nonzero()[0, 0]]
    assert a[info.sessions[1]].sum() == 0 and b[info.sessions[0]].sum() == 0
    assert a[info.sessions[0]].sum() > 0 and b[info.sessions[1]].sum() > 0


def test_test_experiences_hold_all_images_of_seen_classes_with_full_labels(tiny):
    benchmark, info = tiny
    final = benchmark.test_stream[len(info.sessions) - 1].dataset
    assert len(final) == 200 and final.mask.all()
    for t, exp in enumerate(benchmark.test_stream):
        n_seen = info.seen_after(t)
        data = exp.dataset
        shows_seen = final.targets[:, :n_seen].any(1)
        assert torch.equal(data.index.sort().values, final.index[shows_seen].sort().values)
        order = torch.searchsorted(final.index, data.index)
        assert torch.equal(data.targets, final.targets[order])


def test_content_is_fixed_by_the_name_and_data_seed_changes_it():
    a, info_a = streams.build(TINY)
    b, info_b = streams.build(TINY)
    c, info_c = streams.build(TINY + "&data_seed=1")
    xa, xb = a.train_stream[0].dataset.pool.images, b.train_stream[0].dataset.pool.images
    assert torch.equal(xa, xb) and info_a.class_order == info_b.class_order
    assert not torch.equal(xa, c.train_stream[0].dataset.pool.images)


def test_train_and_test_canvases_use_disjoint_source_digits(tiny):
    benchmark, _ = tiny
    (train_digits, _), (test_digits, _) = _source_split(torch.Generator().manual_seed(0))
    train_set = {d.numpy().tobytes() for d in train_digits}
    test_set = {d.numpy().tobytes() for d in test_digits}
    only_train = train_set - test_set
    canvases = benchmark.test_stream[len(benchmark.test_stream) - 1].dataset.pool.images
    cells = canvases.reshape(-1, GRID, CELL, GRID, CELL).permute(0, 1, 3, 2, 4)
    cells = cells.reshape(-1, CELL, CELL)
    used = {c.numpy().tobytes() for c in cells if c.abs().sum() > 0}
    assert used <= test_set and not used & only_train


def test_label_distribution_is_long_tailed_with_the_asked_ratio():
    _, info = streams.build("digits:B0-C2?ratio=10")
    counts = torch.tensor(info.class_counts, dtype=torch.float)
    assert 6 < counts.max() / counts.min() < 16
    _, flat = streams.build("digits:B0-C2?ratio=1")
    flat_counts = torch.tensor(flat.class_counts, dtype=torch.float)
    assert flat_counts.max() / flat_counts.min() < 1.3


def test_digits_lt_follows_the_exponential_profile_and_is_single_label():
    benchmark, info = streams.build("digits-lt:B4-C2?ratio=10&n_max=300")
    assert info.label_mode == "single" and [len(s) for s in info.sessions] == [4, 2, 2, 2]
    counts = sorted(info.class_counts, reverse=True)
    assert counts == [int(300 * 10 ** (-r / 9)) for r in range(10)]
    test = benchmark.test_stream[3].dataset
    assert torch.bincount(test.targets).tolist() == [100] * 10
    x, y, mask, session = benchmark.train_stream[1].dataset[0]
    assert y.dtype == torch.long and y.item() in info.sessions[1] and mask.sum() == 2


def test_validation_images_leave_every_sessions_training_set_and_the_counts():
    built = streams.build(TINY + "&valid=0.25")
    plain = streams.build(TINY)
    train = [built.benchmark.train_stream[t].dataset for t in range(5)]
    whole = [plain.benchmark.train_stream[t].dataset for t in range(5)]
    held = set(built.benchmark.valid_stream[4].dataset.index.tolist())
    every = set(torch.cat([s.index for s in whole]).tolist())
    assert len(held) == round(0.25 * len(every))
    recurring = [i for i in every if sum(i in set(s.index.tolist()) for s in whole) > 1]
    assert set(recurring) & held, "the stream must hold images of several sessions"
    for t in range(5):
        kept = set(train[t].index.tolist())
        assert not kept & held and kept | (set(whole[t].index.tolist()) & held) == set(
            whole[t].index.tolist())
        valid = built.benchmark.valid_stream[t].dataset  # like the test set: full labels
        seen = built.info.seen_after(t)
        assert valid.targets[:, :seen].any(1).all() and valid.mask.all()
        assert torch.equal(valid.targets, built.train_labels[valid.index])
        assert len(built.benchmark.test_stream[t].dataset) == len(
            plain.benchmark.test_stream[t].dataset)
    kept_images = torch.tensor(sorted(every - held))
    assert built.info.class_counts == built.train_labels[kept_images].sum(0).long().tolist()
    assert built.info.class_counts != plain.info.class_counts


def test_eval_valid_evaluates_on_the_validation_split():
    built = streams.build(TINY + "&valid=0.2&eval=valid")
    for t in range(5):
        assert torch.equal(built.benchmark.test_stream[t].dataset.index,
                           built.benchmark.valid_stream[t].dataset.index)
    with pytest.raises(StreamError, match="needs a validation split"):
        streams.parse(TINY + "&eval=valid")
    with pytest.raises(StreamError, match="eval='train' for 'digits' must be one of: test, valid"):
        streams.parse(TINY + "&valid=0.1&eval=train")


def test_a_single_label_validation_split_mirrors_the_test_split():
    built = streams.build("digits-lt:B4-C2?n_max=60&test_per_class=10&valid=0.2")
    for t, classes in enumerate(built.info.sessions):
        valid = built.benchmark.valid_stream[t].dataset
        assert (valid.targets <= classes[-1]).all()
        assert torch.equal(valid.targets, built.train_labels[valid.index])
    train = torch.cat([built.benchmark.train_stream[t].dataset.targets for t in range(4)])
    assert built.info.class_counts == torch.bincount(train, minlength=10).tolist()


def test_images_are_tensors_of_the_canvas_size_or_the_asked_one(tiny):
    benchmark, _ = tiny
    x, y, mask, session = benchmark.train_stream[0].dataset[0]
    assert x.shape == (1, 24, 24) and y.shape == (10,) and mask.dtype == torch.bool
    resized, info = streams.build(TINY, image_size=32)
    assert resized.test_stream[0].dataset[0][0].shape == (1, 32, 32)
    assert info.recipe["image_size"] == 32


@pytest.mark.parametrize("name, message", [
    ("digits", "expected dataset:B<base>-C<inc>"),
    ("digits:B0C2", "expected dataset:B<base>-C<inc>"),
    ("nope:B0-C2", "unknown dataset 'nope'"),
    ("digits:B0-C3", "does not divide 10 classes"),
    ("digits:B0-C2?colour=red", "unknown option 'colour'"),
    ("digits:B0-C2?ratio=high", "must be a finite float"),
    ("digits:B0-C2?ratio=nan", "must be a finite float"),
    ("digits:B0-C2?ratio=10&ratio=20", "'ratio' given twice"),
    ("digits:B0-C2?valid=1.5", "must be in [0, 1)"),
])
def test_bad_stream_names_are_one_clear_error(name, message):
    with pytest.raises(StreamError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        streams.parse(name)
