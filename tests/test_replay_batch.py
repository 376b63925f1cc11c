"""``replay_batch``: how a replay method's batches mix the memory with the session's data
(strategies/template.py), and the ``--replay-batch`` flag that sets it for every replay method."""
from pathlib import Path

import pytest
import torch
from avalanche.benchmarks.utils.data_loader import ReplayDataLoader
from avalanche.core import SupervisedPlugin

from tiny import strategy

TOY = str(Path(__file__).with_name("toy_methods.py"))


class Batches(SupervisedPlugin):
    """The origin sessions of every training batch of every session, and each session's
    training rows and loader."""

    def __init__(self):
        super().__init__()
        self.sessions, self.rows, self.loaders = {}, {}, {}

    def before_training_epoch(self, strategy, **kwargs):
        self.rows[strategy.session] = len(strategy.adapted_dataset)
        self.loaders[strategy.session] = strategy.dataloader

    def before_training_iteration(self, strategy, **kwargs):
        self.sessions.setdefault(strategy.session, []).append(strategy.mb_session.clone())


def second_session(method, replay_batch, batch_size=10, memory=5):
    """What :class:`Batches` saw of ``method`` over sessions 0 and 1 (one epoch each) on the
    tiny single-label stream, and the stream's info."""
    seen = Batches()
    s, benchmark, info = strategy(method, plugins=[seen], replay_batch=replay_batch,
                                  batch_size=batch_size, memory=memory, selection="random")
    for exp in benchmark.train_stream[:2]:
        s.train(exp)
    return seen, info


@pytest.mark.parametrize("method", ["replay", "icarl"])
def test_balanced_batches_hold_a_batch_of_new_rows_and_a_batch_of_memory(method):
    seen, info = second_session(method, "balanced")
    batches = seen.sessions[1]
    memory_rows = 5 * len(info.sessions[0])  # 5 per class of session 0
    new_rows = seen.rows[1] - memory_rows
    assert isinstance(seen.loaders[1], ReplayDataLoader)
    assert not isinstance(seen.loaders[0], ReplayDataLoader)  # no memory yet
    assert len(batches) == -(-new_rows // 10)  # an epoch ends with the session's rows
    for i, sessions in enumerate(batches):
        new = int((sessions == 1).sum())
        assert new == (10 if i < len(batches) - 1 else new_rows - 10 * i)
        assert int((sessions == 0).sum()) == 10  # the memory cycles: always a full batch
    # every memory row is replayed: 10 per step from a memory of 20
    assert sum(int((b == 0).sum()) for b in batches) == 10 * len(batches) >= memory_rows


def test_concat_batches_draw_from_the_session_and_memory_shuffled_together():
    seen, info = second_session("replay", "concat")
    batches = seen.sessions[1]
    sessions = torch.cat(batches)
    memory_rows = 5 * len(info.sessions[0])
    assert not isinstance(seen.loaders[1], ReplayDataLoader)
    # one pass over the concatenated set: every row once, memory in its share of the set
    assert len(sessions) == seen.rows[1]
    assert int((sessions == 0).sum()) == memory_rows
    assert [len(b) for b in batches[:-1]] == [10] * (len(batches) - 1)
    assert len({int((b == 0).sum()) for b in batches}) > 1  # the memory's share varies


def test_the_first_session_and_methods_without_memory_are_unchanged_by_balanced():
    # no memory yet (session 0), or none at all (finetune): both loaders are the same pass
    orders = {}
    for replay_batch in ("concat", "balanced"):
        seen = Batches()
        s, benchmark, _ = strategy("finetune", plugins=[seen], replay_batch=replay_batch,
                                   batch_size=10)
        for exp in benchmark.train_stream[:2]:
            s.train(exp)
        orders[replay_batch] = [torch.cat(seen.sessions[k]) for k in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(orders["concat"], orders["balanced"]))


def test_a_bad_replay_batch_is_refused_by_the_template():
    with pytest.raises(ValueError, match="unknown replay_batch 'mixed'; accepted: concat, "
                                         "balanced"):
        strategy("replay", replay_batch="mixed")


def test_the_flag_and_the_config_key_set_the_recipe_and_the_cells_id(tmp_path):
    import fake_cell
    from benchmarks.run import main
    from benchmarks.runner.store import Store

    base = ["--methods", "toy", "--plugin", TOY, "--seeds", "0", "--quiet"]
    ids = {}
    for name, extra, train in [("default", [], {}),
                               ("concat", ["--replay-batch", "concat"], {"replay_batch": "concat"}),
                               ("balanced", ["--replay-batch", "balanced"],
                                {"replay_batch": "balanced"})]:
        assert main([*base, *extra, "--out", str(tmp_path / name)], cell=fake_cell.run_cell) == 0
        (record,) = Store(tmp_path / name).load_all().values()
        ids[name] = record["id"]
        assert record["spec"]["train"] == train
    assert len(set(ids.values())) == 3  # given, the flag is part of the id; absent, ids stay
    config = tmp_path / "grid.yaml"
    config.write_text(f"methods: [toy]\nplugins: [{TOY}]\nseeds: [0]\nreplay_batch: balanced\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "yaml"), "--quiet"],
                cell=fake_cell.run_cell) == 0
    (record,) = Store(tmp_path / "yaml").load_all().values()
    assert record["id"] == ids["balanced"]


def test_every_stream_recipe_concatenates_by_default():
    from benchmarks import streams

    for name in ("digits", "digits-lt", "coco", "voc", "cifar100lt", "synthetic"):
        assert streams.datasets()[name].recipe["replay_batch"] == "concat"


@pytest.mark.parametrize("argv", [["--replay-batch", "mixed"], ["--config", "YAML"]])
def test_a_bad_replay_batch_exits_2_with_one_line_before_any_work(tmp_path, capsys, argv):
    from benchmarks.run import main

    def forbidden(spec, progress=False):
        raise AssertionError("no cell should run")

    config = tmp_path / "grid.yaml"
    config.write_text("replay_batch: mixed\n")
    argv = [str(config) if a == "YAML" else a for a in argv]
    assert main(["--methods", "replay", "--out", str(tmp_path / "out"), *argv],
                cell=forbidden) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert "--replay-batch" in err and "'mixed'" in err and "concat" in err
    assert not (tmp_path / "out").exists()
