"""The method pages' generated tables: ``python -m benchmarks.docs [--check] [--root DIR]``.

Each method shipped in ``methods/`` has a page ``docs/methods/<name>.md``. Between the
markers ``<!-- generated: defaults -->`` and ``<!-- end generated -->`` the page holds what
the method's ``@register(...)`` declares (methods/_registry.py): its label modes, paper,
summary line, one row per hyperparameter with its default, the values it accepts (range or
choices) and its search space for ``benchmarks.tune``, each rule between hyperparameters
(``constraints``); then links to the method file and the ``strategies`` modules it imports,
and the method module's docstring, quoted. Everything outside the markers is written by
hand and left alone.

Without ``--check`` the blocks are (re)written: a page without markers gets the block after
its title (a missing page is created with a title and the block). With ``--check`` nothing is
written; the command prints each stale page (a block that differs from the registry, a
missing page or block, a page of no shipped method) and exits 1, or exits 0 when every page
is up to date. Methods from plugins and entry points are not documented here. Imports no
torch: the declarations are read, not built.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Optional

START, END = "<!-- generated: defaults -->", "<!-- end generated -->"
ROOT = Path(__file__).resolve().parents[1]
LABELS = {"multi": "multi-label", "single": "single-label"}
SPACE_TEXT = {"float": "uniform", "log": "log-uniform", "int": "integers"}
TUNE_LR = ("`benchmarks.tune` also searches the learning rate, for every method: log-uniform "
           "from the recipe's lr / 10 to lr × 10; `--lr` fixes it.")
TUNE_SET = " `--set {name}.KEY=VALUE` fixes a key of the space (it is then not searched)."


def shipped() -> dict:
    """The methods registered by the suite's own ``methods/`` modules, by name."""
    from methods import discover
    return {name: m for name, m in sorted(discover().items()) if not m.external}


def _value(value) -> str:
    return "`null`" if value is None else f"`{value!r}`" if isinstance(value, str) else (
        f"`{str(value).lower()}`" if isinstance(value, bool) else f"`{value}`")


def _accepted(method, key) -> str:
    if key in method.choices:
        return ", ".join(_value(v) for v in method.choices[key])
    if key in method.ranges:
        low, high = method.ranges[key]
        default = method.defaults[key]
        null = " or `null`" if default is None else ""
        if low is not None and high is not None:
            return f"{low} to {high}{null}"
        if low is not None:
            return f"≥ {low}{null}"
        return f"≤ {high}{null}" if high is not None else f"any number{null}"
    default = method.defaults[key]
    return "`true`, `false`" if isinstance(default, bool) else type(default).__name__


def _space(method, key) -> str:
    entry = method.space.get(key)
    if entry is None:
        return "–"
    if entry[0] == "choice":
        return "one of " + ", ".join(_value(v) for v in entry[1])
    return f"{SPACE_TEXT[entry[0]]} {entry[1]} to {entry[2]}"


def _paper(paper: str) -> str:
    found = re.fullmatch(r"arXiv:(\S+)", paper)
    return f"[{paper}](https://arxiv.org/abs/{found.group(1)})" if found else paper or "–"


def _mechanisms(tree: ast.Module) -> list[str]:
    """The ``strategies`` modules a method file imports (its mechanisms), sorted; the
    torch-free option vocabularies left out."""
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and (node.module or "").startswith("strategies.")}
    return sorted(names - {"strategies.options"})


def block(method) -> str:
    """The generated block of ``method``'s page, markers included."""
    modes = ", ".join(LABELS[m] for m in sorted(method.label_modes))
    source = Path(method.source).name
    tree = ast.parse(Path(method.source).read_text())
    code = [f"[`methods/{source}`](../../methods/{source})"] + [
        f"[`{name.replace('.', '/')}.py`](../../{name.replace('.', '/')}.py)"
        for name in _mechanisms(tree)]
    doc = (ast.get_docstring(tree) or "").splitlines()
    lines = [START,
             "_Generated from the method's `@register` declaration and its module docstring "
             "by `python -m benchmarks.docs`; edit those, not this block._", "",
             f"- **Summary**: {method.summary}",
             f"- **Label modes**: {modes}",
             f"- **Paper**: {_paper(method.paper)}",
             f"- **Code**: {', '.join(code)}", ""]
    if method.defaults:
        lines += ["| hyperparameter | default | accepted | search space (`benchmarks.tune`) |",
                  "|---|---|---|---|"]
        lines += [f"| `{key}` | {_value(value)} | {_accepted(method, key)} | "
                  f"{_space(method, key)} |" for key, value in method.defaults.items()]
    else:
        lines.append("No hyperparameters of its own.")
    if method.constraints:
        lines += ["", "Rules between hyperparameters, checked with the ranges before any work:"]
        lines += [f"- {', '.join(f'`{k}`' for k in keys)}: {rule}"
                  for keys, rule, _ in method.constraints]
    lines += ["", TUNE_LR + (TUNE_SET.format(name=method.name) if method.space else "")]
    if doc:
        lines += ["", f"From the docstring of `methods/{source}`:", "",
                  *(f"> {line}".rstrip() for line in doc)]
    lines += ["", END]
    return "\n".join(lines)


def _with_block(text: str, new: str) -> str:
    """``text`` with its generated block replaced by ``new`` (inserted after the title
    when it has none)."""
    if START in text and END in text.split(START, 1)[1]:
        head, rest = text.split(START, 1)
        return head + new + rest.split(END, 1)[1]
    lines = text.splitlines(keepends=True)
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "".join(lines[:at]) + "\n" + new + "\n\n" + "".join(lines[at:])


def stale(root: Path = ROOT, write: bool = False) -> list[str]:
    """The pages under ``root/docs/methods`` that disagree with the registry, each as
    ``path: why``; with ``write``, the blocks of the shipped methods' pages are rewritten
    first (so only pages of no shipped method remain)."""
    folder = Path(root) / "docs" / "methods"
    methods, found = shipped(), []
    for name, method in methods.items():
        page, new = folder / f"{name}.md", block(method)
        text = page.read_text() if page.is_file() else None
        updated = _with_block(text if text is not None else f"# {name}\n", new)
        if updated == text:
            continue
        if write:
            folder.mkdir(parents=True, exist_ok=True)
            page.write_text(updated)
            continue
        why = ("missing" if text is None else "no generated block" if START not in text
               else "generated block out of date")
        found.append(f"{page.relative_to(root)}: {why}")
    for page in sorted(folder.glob("*.md")) if folder.is_dir() else []:
        if page.stem not in methods:
            found.append(f"{page.relative_to(root)}: no shipped method {page.stem!r}")
    return found


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """Bad input is one ``error:`` line and exit status 2."""
        self.exit(2, f"error: {message}; see python -m benchmarks.docs --help\n")


def main(argv: Optional[list] = None) -> int:
    parser = _Parser(
        prog="python -m benchmarks.docs",
        description="(Re)write the generated defaults block of every docs/methods/<name>.md "
                    "from the method registry; --check only reports stale pages.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each stale page, 0 if none")
    parser.add_argument("--root", default=str(ROOT),
                        help="the repository whose docs/methods/ to use (default: this one)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not (root / "docs").is_dir():
        print(f"error: {root} has no docs/ folder; give the repository root with --root",
              file=sys.stderr)
        return 2
    pages = stale(root, write=not args.check)
    for page in pages:
        print(page, file=sys.stderr)
    if pages:
        print(f"{len(pages)} stale page(s); run python -m benchmarks.docs", file=sys.stderr)
        return 1
    if not args.check:
        print(f"docs/methods/ is up to date ({len(shipped())} methods)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
