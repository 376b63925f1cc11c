"""A fake cell function for runner tests: a deterministic multi-label record, no training,
and no import of the methods (so that worker processes start fast).

The hyperparameter ``mode`` picks the outcome: ``ok`` (default), ``fail`` (a failed record, as
the real cell returns), ``raise`` (a cell that breaks its contract) or ``die`` (the process
ends abruptly, as when it is killed for memory).
"""
import os
import random

import torch

SESSIONS = 3


def run_cell(spec, progress=False):
    mode = spec.hparams.get("mode", "ok")
    if mode == "raise":
        raise RuntimeError("the fake cell raised")
    if mode == "die":
        os._exit(1)
    rng = random.Random(spec.id)
    sessions = [{"session": t, "n_seen": 2 * (t + 1), "train_time_s": 0.0, "eval_time_s": 0.0,
                 "metrics": {"mAP": rng.uniform(20, 80), "CF1": rng.uniform(0, 50),
                             "OF1": rng.uniform(0, 50), "head_mAP": rng.uniform(20, 80),
                             "medium_mAP": rng.uniform(20, 80), "tail_mAP": None},
                 "per_class": [rng.uniform(0, 100) for _ in range(2 * (t + 1))]}
                for t in range(SESSIONS)]
    last = sessions[-1]["metrics"]
    failed = mode == "fail"
    return {
        "id": spec.id, "spec": spec.to_dict(), "status": "failed" if failed else "done",
        "error": "ValueError: loss is NaN" if failed else None, "traceback": None,
        "env": {"threads": torch.get_num_threads(), "progress": progress},
        "stream": {"name": spec.stream, "label_mode": "multi"},
        "hparams": spec.hparams, "train": spec.train,
        "sessions": [] if failed else sessions,
        "summary": {} if failed else {
            "avg_mAP": sum(s["metrics"]["mAP"] for s in sessions) / SESSIONS,
            "last_mAP": last["mAP"], "last_CF1": last["CF1"], "last_OF1": last["OF1"],
            "last_head_mAP": last["head_mAP"], "last_medium_mAP": last["medium_mAP"],
            "last_tail_mAP": None, "forgetting": rng.uniform(0, 10)},
        "wall_time_s": 0.01,
    }
