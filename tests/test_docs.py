"""The documentation: the method pages' generated tables match the registry
(benchmarks/docs.py), every relative link and #anchor of README.md, results/README.md and
docs/ resolves, docs/index.md lists every page, and README still holds what CI and
tests/test_readme_example.py read from it."""
import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import docs

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchor(heading: str) -> str:
    """GitHub's id for a heading: the rendered text, lower-cased, characters other than
    letters, digits, spaces, hyphens and underscores dropped, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def anchors(page: Path) -> set:
    """Every heading id of a markdown page (repeats numbered as GitHub does) and every
    explicit ``id=`` / ``name=`` of an HTML tag."""
    text = FENCE.sub("", page.read_text())
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        base = anchor(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found | set(re.findall(r"""<[^>]+\b(?:id|name)=["']([^"']+)["']""", text))


def broken_links(pages) -> list[str]:
    """``page: target (why)`` for every relative link or image of ``pages`` whose file or
    folder is missing, or whose #anchor is not a heading of its markdown target."""
    broken = []
    for page in pages:
        name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
        text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{name}: {target} (no such file)")
            elif fragment and file.suffix == ".md" and fragment not in anchors(file):
                broken.append(f"{name}: {target} (no such anchor)")
    return broken


def documentation() -> list[Path]:
    return [ROOT / "README.md", ROOT / "results" / "README.md",
            *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_relative_link_and_anchor_of_readme_and_docs_resolves():
    pages = documentation()
    assert len(pages) > 20
    assert broken_links(pages) == []


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    page = ROOT / "docs" / "index.md"
    doctored = tmp_path / "page.md"
    doctored.write_text("# Title\n\n## A `code` heading, with (punctuation) × 2\n\n"
                        "[ok](#title) [ok](#a-code-heading-with-punctuation--2) "
                        f"[ok]({page}) [ok]({page}#using-the-suite) "
                        "`[not a link](nowhere.md)` [web](https://example.org/x.md)\n"
                        "[gone](nowhere.md) [bad](#no-such-heading) "
                        f"[bad]({page}#no-such-heading) ![img](img/none.png)\n"
                        "```\n[in a code block](nowhere.md)\n```\n")
    found = broken_links([doctored])
    assert [line.split(": ", 1)[1] for line in found] == [
        "nowhere.md (no such file)", "#no-such-heading (no such anchor)",
        f"{page}#no-such-heading (no such anchor)", "img/none.png (no such file)"]


def test_every_shipped_method_has_an_up_to_date_page():
    assert docs.stale(ROOT) == []
    assert docs.main(["--check"]) == 0
    pages = {p.stem for p in (ROOT / "docs" / "methods").glob("*.md")}
    assert pages == set(docs.shipped())


def test_a_stale_page_is_named_and_rewriting_restores_it(tmp_path, capsys):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    methods = tmp_path / "docs" / "methods"
    rebll = methods / "rebll.md"
    good = rebll.read_text()
    rebll.write_text(good.replace("| `tau` | `0.7` |", "| `tau` | `0.5` |"))
    lwf = (methods / "lwf.md").read_text()
    (methods / "lwf.md").write_text(lwf.replace(docs.START, "").replace(docs.END, ""))
    (methods / "wa.md").unlink()
    (methods / "nosuch.md").write_text("# nosuch\n")
    assert docs.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "docs/methods/rebll.md: generated block out of date" in err
    assert "docs/methods/lwf.md: no generated block" in err
    assert "docs/methods/wa.md: missing" in err
    assert "docs/methods/nosuch.md: no shipped method 'nosuch'" in err
    assert "docs/methods/psd.md" not in err

    assert docs.main(["--root", str(tmp_path)]) == 1  # rewrites; nosuch.md stays stale
    assert rebll.read_text() == good
    assert docs.block(docs.shipped()["lwf"]) in (methods / "lwf.md").read_text()
    assert "learning without forgetting" in (methods / "lwf.md").read_text()  # hand text kept
    assert (methods / "wa.md").read_text().startswith("# wa\n")
    (methods / "nosuch.md").unlink()
    assert docs.main(["--check", "--root", str(tmp_path)]) == 0


def test_a_changed_declaration_makes_its_page_stale(monkeypatch):
    methods = docs.shipped()
    rebll = methods["rebll"]
    changed = dataclasses.replace(rebll, defaults={**rebll.defaults, "tau": 0.8},
                                  space={**rebll.space, "mu": ("log", 0.5, 2.0)})
    monkeypatch.setattr(docs, "shipped", lambda: {**methods, "rebll": changed})
    assert docs.stale(ROOT) == ["docs/methods/rebll.md: generated block out of date"]
    block = docs.block(changed)
    assert "| `tau` | `0.8` | 0.0 to 1.0 | uniform 0.5 to 0.95 |" in block
    assert "| `mu` | `1.0` | ≥ 0.0 | log-uniform 0.5 to 2.0 |" in block


def test_the_block_shows_choices_ranges_null_defaults_and_the_paper_link():
    methods = docs.shipped()
    krt = docs.block(methods["krt"])
    assert "| `embed_dim` | `null` | 1 to 4096 or `null` | – |" in krt
    assert "[arXiv:2302.13334](https://arxiv.org/abs/2302.13334)" in krt
    assert "| `restore` | `'dynamic'` |" in krt
    assert "- `embed_dim`, `num_heads`: embed_dim is null or a multiple of num_heads" in krt
    assert "No hyperparameters of its own." in docs.block(methods["finetune"])
    assert "- **Label modes**: multi-label, single-label" in docs.block(methods["replay"])


def test_bad_input_is_one_error_line_exit_2(tmp_path, capsys):
    assert docs.main(["--check", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(tmp_path) in err
    with pytest.raises(SystemExit) as exit:
        docs.main(["--bogus"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: --bogus") and err.count("\n") == 1


def test_readme_holds_the_commands_ci_runs_and_the_example_its_test_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for marker in ("# README: install", "# README: test"):
        command = ci[ci.index(marker) + 1]
        assert command in readme, command
    from test_readme_example import example  # tests/ is on sys.path under pytest
    code = example()
    assert '@register("anchor"' in code and "OldLogitAnchor" in code
    assert "python -m benchmarks.run --plugin mymethod.py" in readme


def test_the_index_lists_every_page_of_docs():
    index = ROOT / "docs" / "index.md"
    text = FENCE.sub("", index.read_text())
    linked = {(index.parent / target.partition("#")[0]).resolve()
              for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)}
    pages = {page.resolve() for page in (ROOT / "docs").rglob("*.md")} - {index.resolve()}
    assert sorted(str(p.relative_to(ROOT)) for p in pages - linked) == []
