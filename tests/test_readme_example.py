"""README's "Adding a method" example, used as the README says: its file, through --plugin."""
import re
from pathlib import Path

from benchmarks.run import main
from benchmarks.runner.store import Store

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = "digits:B0-C2?train=300&test=150"


def example() -> str:
    """The ``# mymethod.py`` code block of the README."""
    found = re.search(r"```python\n(# mymethod\.py\n.*?)```", README.read_text(), re.S)
    assert found, "README has no ```python block starting with '# mymethod.py'"
    return found.group(1)


def summaries(out: Path) -> dict:
    return {(r["spec"]["method"], r["spec"]["hparams"].get("weight")): r["summary"]
            for r in Store(out).load_all().values() if r["status"] == "done"}


def test_the_readme_plugin_runs_and_its_anchor_is_what_differs_from_replay(tmp_path):
    plugin = tmp_path / "mymethod.py"
    plugin.write_text(example())
    grid = ["--plugin", str(plugin), "--streams", TINY, "--seeds", "0", "--epochs", "1",
            "--threads", "1", "--quiet", "--out", str(tmp_path / "out")]
    assert main([*grid, "--methods", "anchor,replay", "--set", "anchor.weight=0"]) == 0
    assert main([*grid, "--methods", "anchor", "--set", "anchor.weight=5"]) == 0
    got = summaries(tmp_path / "out")
    assert set(got) == {("anchor", 0.0), ("anchor", 5.0), ("replay", None)}
    assert got[("anchor", 0.0)] == got[("replay", None)]  # no anchor: replay exactly
    assert got[("anchor", 5.0)] != got[("replay", None)]
