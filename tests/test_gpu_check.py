"""The GPU check (python -m benchmarks.perf.gpu): its dry run on the CPU produces every step
with its figures; a broken step, a spent budget and bad input are reported as they must be.
No time is asserted."""
import json
import math

import pytest
import torch

from benchmarks import run, streams
from benchmarks.perf import gpu
from benchmarks.runner.spec import RunSpec
from benchmarks.streams.names import session_splits


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    code = gpu.main(["--dry-run", "--out", str(out)])
    return code, json.loads(out.read_text())


def steps_of(report):
    return {s["step"]: s for s in report["steps"]}


def test_the_dry_run_does_every_step_on_the_cpu(dry_run):
    code, report = dry_run
    assert code == 0 and report["dry_run"] and report["device"].startswith("cpu (")
    steps = steps_of(report)
    assert list(steps) == list(gpu.STEPS)
    assert all(s["status"] == "done" and s["error"] is None and s["seconds"] > 0
               for s in steps.values())
    env = steps["1"]
    assert env["torch"] == torch.__version__ and "no GPU figures" in env["note"]
    assert {"torchvision", "avalanche", "torch_cuda", "code_version", "cpu"} <= set(env)


def test_the_training_step_is_timed_in_steady_state_and_profiled(dry_run):
    step = steps_of(dry_run[1])["2"]
    sizes = gpu.SIZES["dry"]
    train_images = int(streams.parse(sizes.step_stream)[1].options["train"])
    # one session holding every image, the first step_skip batches untimed
    assert step["samples"] == train_images - sizes.step_skip * sizes.step_train["batch_size"]
    assert step["skipped_iterations"] == sizes.step_skip
    assert step["ratio"] > 0 and step["suite_samples_per_s"] > 0 and step["hand_samples_per_s"] > 0
    assert step["train"]["amp"] == "bf16" and step["train"]["channels_last"]
    assert step["target"] == "<= 1.05" and step["met"] == (step["ratio"] <= 1.05)
    profile = step["profile"]  # always profiled in a dry run
    assert profile["top_ops"] and all(op["calls"] > 0 for op in profile["top_ops"])
    assert profile["sorted_by"] == "self CPU time" and profile["syncs"] == {}  # no CUDA
    assert set(profile["host_reads"]) <= set(gpu.HOST_READS)
    assert profile["iterations"] == math.ceil(train_images / sizes.step_train["batch_size"])


def test_the_grid_runs_every_method_through_the_runner(dry_run):
    step = steps_of(dry_run[1])["3"]
    assert step["all_done"] and step["exit_status"] == 0
    assert [c["method"] for c in step["cells"]] == list(gpu.GRID_METHODS)
    for cell in step["cells"]:
        assert cell["status"] == "done" and cell["wall_s"] >= cell["train_s"] > 0
        assert cell["train_images_per_s"] == pytest.approx(cell["train_images"] / cell["train_s"])
        assert cell["peak_gpu_mib"] is None  # no GPU in a dry run
        assert 0 <= cell["summary"]["last_mAP"] <= 100
    images = gpu.train_images(gpu.SIZES["dry"].grid_stream)  # one epoch
    assert {c["train_images"] for c in step["cells"]} == {images}
    assert step["psd_over_replay"]["train"] > 0


def test_determinism_and_fp16_compare_runs_of_one_cell(dry_run):
    steps = steps_of(dry_run[1])
    det = steps["4"]
    for mode in ("default", "deterministic"):  # the CPU gives the same numbers twice
        assert det[mode]["identical"] and det[mode]["max_abs_diff"] == 0 and det[mode]["values"]
    assert det["cublas_workspace_config"] == ":4096:8"
    fp16 = steps["5"]
    assert fp16["bf16"]["status"] == fp16["fp16"]["status"] == "done"
    assert fp16["diff"]["last_mAP"] == pytest.approx(
        fp16["fp16"]["summary"]["last_mAP"] - fp16["bf16"]["summary"]["last_mAP"])
    assert fp16["close"] == all(abs(fp16["diff"][k]) <= gpu.FP16_TOLERANCE
                                for k in ("avg_mAP", "last_mAP"))


def test_the_reference_step_times_the_commands_against_the_cpu_figures(dry_run):
    step = steps_of(dry_run[1])["6"]
    main = step["main_command"]
    assert main["command"].startswith("python -m benchmarks.run --methods replay,lwf")
    assert main["cpu_wall_s"] == gpu.CPU_MAIN_COMMAND_S
    assert main["cpu_over_gpu"] == pytest.approx(gpu.CPU_MAIN_COMMAND_S / main["wall_s"])
    cells = step["digits"]["cells"]
    assert set(cells) == set(gpu.CPU_DIGITS_S_PER_CELL)
    for method, cell in cells.items():
        assert cell["cpu_over_gpu"] == pytest.approx(gpu.CPU_DIGITS_S_PER_CELL[method]
                                                     / cell["wall_s"])


def test_spread_reports_the_largest_difference_and_where():
    def record(ap):
        return {"sessions": [{"session": 0, "metrics": {"mAP": 50.0}, "per_class": [ap, 40.0],
                              "train_loss": [0.5]}],
                "summary": {"last_mAP": 50.0, "forgetting": None}}

    assert gpu.spread(record(30.0), record(30.0))["identical"]
    got = gpu.spread(record(30.0), record(30.25))
    assert not got["identical"] and got["values_differing"] == 1 and got["values"] == 5
    assert got["max_abs_diff"] == 0.25 and got["max_abs_diff_at"] == "session0.per_class[0]"


def test_a_broken_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu.MEASURES, "2", lambda check: 1 / 0)
    out = tmp_path / "gpu.json"
    assert gpu.main(["--dry-run", "--steps", "2,1", "--out", str(out)]) == 1
    steps = json.loads(out.read_text())["steps"]
    assert [(s["step"], s["status"]) for s in steps] == [("2", "failed"), ("1", "done")]
    assert steps[0]["error"] == "ZeroDivisionError: division by zero"


def test_a_spent_budget_skips_steps_and_cells(tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--dry-run", "--steps", "1", "--budget", "1e-9", "--out", str(out)]) == 1
    (step,) = json.loads(out.read_text())["steps"]
    assert step["status"] == "skipped" and "budget" in step["error"]
    check = gpu.Check(gpu.SIZES["dry"], 1e-9, True)
    record = check.cell(RunSpec("replay", gpu.SIZES["dry"].cell_stream, 0))
    assert record["status"] == "failed" and "budget" in record["error"]


def test_the_full_sizes_are_accepted_by_the_runner(tmp_path):
    """The full check never runs in CI: its streams and commands are valid here."""
    full = gpu.SIZES["full"]
    commands = [["--methods", ",".join(gpu.GRID_METHODS), "--streams", full.grid_stream,
                 "--amp", "bf16", *full.run_flags, *full.grid_flags],
                ["--methods", "replay", "--streams", full.cell_stream, "--amp", "fp16",
                 *full.run_flags], list(full.main_command), list(full.digits_command)]
    for argv in commands:
        args, config = run.parse([*argv, "--device", "cuda", "--out", str(tmp_path / "out")])
        assert run.make_plan(args, config).specs
    dataset, name = streams.parse(full.step_stream)  # one session: every image timed
    assert len(session_splits(dataset.num_classes(name.options), name.base, name.inc)) == 1
    assert full.step_train["backbone"] == "resnet50" and full.step_train["batch_size"] == 64


@pytest.mark.parametrize("argv, message", [
    (["--steps", "7"], "--steps 7: accepted steps are 1, 2, 3, 4, 5, 6"),
    (["--steps", ","], "--steps is empty"),
    (["--budget", "0"], "argument --budget: expected a finite number > 0, got '0'"),
    (["--budget", "soon"], "argument --budget: expected a finite number > 0, got 'soon'"),
    (["--out", "."], "is a folder"),
    (["--dry", "--nope"], "unrecognized arguments: --nope"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert gpu.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_without_a_gpu_the_full_check_asks_for_the_dry_run(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    assert gpu.main(["--out", str(out)]) == 2
    assert "no CUDA device here; run with --dry-run" in capsys.readouterr().err
    assert not out.exists()
