"""Paired differences of rows of a sweep's per_seed.csv to one row, over the seeds both have
(mean and 95% Student-t half-width; * where the interval excludes 0). The report pairs every
method with a baseline method at its defaults and the same training flags; this pairs any
two rows, e.g. one method under two training flags or a baseline with an override.

    python results/sweeps/pairs.py PER_SEED_CSV BASE METRICS [PREFIX]

A row is named ``method``, ``method(config)`` for hyperparameter overrides and
``method[train_config]`` for training flags, e.g. ``replay(negatives=seen)`` or
``replay[selection=herding]``; only rows whose name starts with PREFIX are paired.
"""
import sys

import pandas as pd

from benchmarks.stats import ci95


def label(cell) -> str:
    config = cell["hparams_config"] if isinstance(cell["hparams_config"], str) else ""
    train = cell["train_config"] if isinstance(cell["train_config"], str) else ""
    return cell["method"] + (f"({config})" if config else "") + (f"[{train}]" if train else "")


def main(path: str, base: str, metrics: list[str], prefix: str = "") -> None:
    seeds = pd.read_csv(path)
    seeds = seeds[seeds["status"] == "done"].assign(row=lambda s: s.apply(label, axis=1))
    reference = seeds[seeds["row"] == base]
    for row, cells in seeds.groupby("row"):
        if row == base or not row.startswith(prefix):
            continue
        pairs = cells.merge(reference, on="seed", suffixes=("", "_base"))
        parts = []
        for metric in metrics:
            diff = pairs[metric] - pairs[f"{metric}_base"]
            digits = 3 if metric.endswith("balance") else 1
            mark = "*" if abs(diff.mean()) > ci95(diff) else ""
            parts.append(f"{metric} {diff.mean():+.{digits}f} ± {ci95(diff):.{digits}f}{mark}")
        print(f"{row} - {base} (n={len(pairs)}): " + ", ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3].split(","), *sys.argv[4:])
