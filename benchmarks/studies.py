"""The tuning verdicts behind a results folder's configurations: ``OUT/studies.json``.

``benchmarks.tune`` writes them into ``tuned.yaml`` (key ``studies``, :func:`verdicts`);
``benchmarks.run --config tuned.yaml`` keeps them in the results folder (:func:`save`), and
the report shows them under summary.md and report.html (:func:`section`): which
configurations tuning changed, by how much on validation, and which parameter lies on a
bound of its search range (the best value may then lie outside it)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.runner.store import write_text

FILE = "studies.json"
BOUND_SHARE = 0.05  # a value this close to a range's end (share of the range) is on a bound
KEYS = ("method", "group", "choice", "difference", "two_se", "seeds", "on_bound")


def verdicts(choices: dict) -> dict:
    """Per study of ``benchmarks.tune``'s choices, the fields a results reader needs."""
    return {name: {key: entry.get(key) for key in KEYS} for name, entry in choices.items()}


def check(studies) -> None:
    """Raise ValueError unless ``studies`` maps study names to verdicts."""
    if not isinstance(studies, dict) or not all(isinstance(v, dict) and "choice" in v
                                                for v in studies.values()):
        raise ValueError("'studies' must map study names to tuning verdicts, as "
                         "benchmarks.tune writes them in tuned.yaml")


def save(out: Path, studies: dict) -> Path:
    """Merge ``studies`` into ``out/studies.json`` (a study named again is replaced)."""
    path = Path(out) / FILE
    kept = json.loads(path.read_text()) if path.exists() else {}
    return write_text(path, json.dumps({**kept, **studies}, indent=1, sort_keys=True))


def section(out: Path) -> str:
    """summary.md's tuning section from ``out/studies.json`` ('' without one)."""
    path = Path(out) / FILE
    if not path.exists():
        return ""
    rows = ["", "## How the configurations were chosen", "",
            "| study | choice | best − defaults on validation | seeds | on a bound |",
            "|---|---|---|---|---|"]
    for name, entry in sorted(json.loads(path.read_text()).items()):
        difference, two_se = entry.get("difference"), entry.get("two_se")
        margin = ("–" if difference is None else f"{difference:+.2f} (2 SE "
                  + ("–" if two_se is None or math.isnan(two_se) else f"{two_se:.2f}") + ")")
        choice = "tuned" if entry["choice"] == "tuned" else "defaults stand"
        rows.append(f"| {name} | {choice} | {margin} | {entry.get('seeds') or '–'} | "
                    f"{', '.join(entry.get('on_bound') or []) or '–'} |")
    return "\n".join(rows + [
        "", "From benchmarks.tune (studies.json): the best candidate replaced a method's "
        "defaults only where it beat them on the tuning streams' validation data by more than "
        "two standard errors over the last rung's seeds. A parameter on a bound lies within "
        f"{BOUND_SHARE:.0%} of its search range's end (log scale for a log range): its best "
        "value may lie outside the range, so the range should be widened before trusting it.",
        ""])
