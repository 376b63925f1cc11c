"""One cell end to end: records, forgetting of the baselines, determinism, failures."""
from benchmarks.cell import run_cell
from benchmarks.runner.spec import RunSpec

STREAM = "digits:B0-C2?train=600&test=300"


def without_timings(record):
    drop = {"wall_time_s"}
    sessions = [{k: v for k, v in s.items() if not k.endswith("_time_s")}
                for s in record["sessions"]]
    return {**{k: v for k, v in record.items() if k not in drop}, "sessions": sessions}


def test_a_baseline_record_holds_every_session(cell):
    record = cell("replay")
    assert [s["session"] for s in record["sessions"]] == [0, 1, 2, 3, 4]
    assert [s["n_seen"] for s in record["sessions"]] == [2, 4, 6, 8, 10]
    assert [len(s["per_class"]) for s in record["sessions"]] == [2, 4, 6, 8, 10]
    assert set(record["summary"]) >= {"avg_mAP", "last_mAP", "last_CF1", "forgetting"}
    assert record["hparams"] == {"negatives": "labelled"} and record["train"]["epochs"] == 1
    assert record["env"]["torch"] and record["stream"]["label_mode"] == "multi"


def old_class_drop(record):
    """mAP of session 0's classes right after session 0 minus after the last session."""
    first = record["sessions"][0]["per_class"][:2]
    last = record["sessions"][-1]["per_class"][:2]
    return sum(first) / 2 - sum(last) / 2


def test_finetune_forgets_while_replay_and_joint_forget_less(cell):
    records = {m: cell(m, stream=STREAM, epochs=2) for m in ("finetune", "replay", "joint")}
    drops = {m: old_class_drop(r) for m, r in records.items()}
    assert drops["finetune"] > 15
    assert drops["replay"] < drops["finetune"] - 5
    assert drops["joint"] < drops["finetune"] - 5
    forgetting = {m: r["summary"]["forgetting"] for m, r in records.items()}
    assert forgetting["finetune"] > max(forgetting["replay"], forgetting["joint"])


def test_the_same_seed_gives_identical_records_and_another_seed_differs(cell):
    a, b, c = cell("lwf"), cell("lwf"), cell("lwf", seed=1)
    assert without_timings(a) == without_timings(b)
    assert a["summary"] != c["summary"]


def test_a_single_label_stream_reports_accuracy(cell):
    record = cell("replay", stream="digits-lt:B4-C2?n_max=100&test_per_class=20")
    assert set(record["summary"]) >= {"avg_acc", "last_acc", "forgetting"}
    assert 0 <= record["sessions"][-1]["metrics"]["acc"] <= 100


def test_a_failing_cell_is_a_failed_record_with_the_reason():
    bad = run_cell(RunSpec("finetune", "digits:B0-C2?train=100&test=50", 0, {},
                           {"epochs": 2, "lr": 1e30, "optimizer": "sgd"}))
    assert bad["status"] == "failed" and bad["error"].startswith("Diverged")
    unknown = run_cell(RunSpec("finetune", "digits:B0-C2", 0, {}, {"colour": "red"}))
    assert unknown["status"] == "failed" and "unknown training option(s) colour" in unknown["error"]


def session_numbers(record):
    return [(s["metrics"], s["per_class"], s["train_loss"]) for s in record["sessions"]]


def test_replay_without_memory_is_finetune_exactly(cell):
    """Herding's feature pass and the memory's selection draw from their own generators, so
    a memory of 0 leaves every other random stream (shuffles, augmentation) where it was."""
    finetune = cell("finetune", epochs=2)
    for selection in ("herding", "random"):
        replay = cell("replay", epochs=2, memory=0, selection=selection)
        assert session_numbers(replay) == session_numbers(finetune)


def test_the_optimizer_state_is_reset_at_each_session_unless_the_recipe_keeps_it(cell):
    fresh, kept = cell("finetune"), cell("finetune", reset_optimizer=False)
    assert fresh["train"]["reset_optimizer"] is True
    assert session_numbers(fresh)[0] == session_numbers(kept)[0]  # same first session
    assert session_numbers(fresh)[1] != session_numbers(kept)[1]


def test_the_record_says_which_weights_a_cell_started_from(cell, tmp_path):
    import torch

    from benchmarks import models

    weights = tmp_path / "smallcnn.pt"
    torch.save(models.build("smallcnn", 10, 1).backbone.state_dict(), weights)
    assert cell("finetune")["pretrained"] is None
    started = cell("finetune", pretrained=str(weights))["pretrained"]
    assert started["path"] == str(weights.resolve()) and len(started["sha1"]) == 12
