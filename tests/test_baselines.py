"""The field's imbalance-aware CIL baselines (issue 22): each trains through a 3-session tiny
stream in every label mode it registers, and a bad hyperparameter is a one-line exit 2."""
import math

import pytest

import methods
from benchmarks.run import main

STREAMS = {"single": "digits-lt:B4-C3?n_max=60&test_per_class=20",
           "multi": "digits:B4-C3?train=300&test=150"}
# method -> a bad override and the message it must give
BAD = {"wa": ("wa.temperature=0", "wa.temperature=0.0 is out of range; accepted: >= 0.01"),
       "bic": ("bic.val_share=0.9", "bic.val_share=0.9 is out of range; accepted: from 0.01 to 0.5"),
       "icarl": ("icarl.lamb=-1", "icarl.lamb=-1.0 is out of range; accepted: >= 0.0"),
       "lucir": ("lucir.margin=3", "lucir.margin=3.0 is out of range; accepted: from 0.0 to 2.0"),
       "eeil": ("eeil.ft_lr_factor=2", "eeil.ft_lr_factor=2.0 is out of range; accepted: from 1e-06 to 1.0")}
# shorter extra stages, so that the tiny runs stay short
HPARAMS = {"eeil": {"ft_epochs": 2}}
CASES = [(name, mode) for name in BAD
         for mode in sorted(methods.discover()[name].label_modes)]
TWO_STAGE = [(name, mode) for name in ("lucir", "eeil")
             for mode in sorted(methods.discover()[name].label_modes)]


@pytest.mark.parametrize("method,mode", CASES)
def test_trains_through_three_sessions(cell, method, mode):
    record = cell(method, stream=STREAMS[mode], hparams=HPARAMS.get(method), epochs=1)
    assert [s["n_seen"] for s in record["sessions"]] == [4, 7, 10]
    assert all(math.isfinite(loss) for s in record["sessions"] for loss in s["train_loss"])
    metric = "acc" if mode == "single" else "mAP"
    assert all(0 <= s["metrics"][metric] <= 100 for s in record["sessions"])


@pytest.mark.parametrize("method,mode", TWO_STAGE)
def test_two_stage_trains_through_three_sessions(cell, method, mode):
    hparams = {**HPARAMS.get(method, {}), "two_stage": True, "stage2_epochs": 1}
    record = cell(method, stream=STREAMS[mode], hparams=hparams, epochs=1)
    assert [s["n_seen"] for s in record["sessions"]] == [4, 7, 10]
    assert all(s["notes"]["lws_fit_s"] >= 0 for s in record["sessions"])


def _forbidden(*args, **kwargs):
    raise AssertionError("no cell may run on bad input")


@pytest.mark.parametrize("method", sorted(BAD))
def test_bad_value_is_one_line_exit_2(method, tmp_path, capsys):
    override, message = BAD[method]
    argv = ["--methods", method, "--set", override, "--out", str(tmp_path / "out")]
    assert main(argv, cell=_forbidden) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err
