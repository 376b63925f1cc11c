"""leaderboard.tex: a tiny board whose LaTeX is written out by hand, and pdflatex compiling it
where a TeX is installed."""
import shutil
import subprocess

import pytest

from benchmarks import report
from benchmarks.latex import escape, latex
from benchmarks.runner.store import Store
from test_report import record

# avg_mAP per seed; record() makes last_mAP = avg + 5, last_tail_mAP = avg + 7 and
# forgetting 3.0 on seed 0 only.
RECORDS = [record("replay", 0, 50.0), record("replay", 1, 52.0, version="v0"),
           record("best", 0, 60.0), record("best", 1, 63.0), record("my_method", 0, 40.0)]

# t(0.975, 1) = 12.7062. replay: 50, 52 -> 51 ± 12.7062 * sqrt(2) / sqrt(2) = 12.71;
# best: 60, 63 -> 61.5 ± 12.7062 * 2.1213 / 1.4142 = 19.06; differences to replay 10, 11 ->
# +10.50 ± 12.7062 * 0.7071 / 1.4142 = 6.35, which excludes 0 (*); my_method has one seed
# (no interval) and one pair (no interval, no mark). Forgetting is 3.00 everywhere: nothing
# bold. replay mixes code versions v1 and v0: dagger. Values are rounded to their interval's
# first significant digit (two when it starts with 1; one decimal without an interval), half
# to even: 61.5 ± 19.06 -> 62 ± 19, 66.5 -> 66, +10.50 ± 6.35 -> +10 ± 6.
EXPECTED_TABLE = r"""\begin{table}[ht]
\centering
\footnotesize
\setlength{\tabcolsep}{4pt}
\caption{\texttt{digits:B0-C2} (multi-label): mean $\pm$ half-width of the 95\% Student-t interval over seeds; bold: the best of each column; $\Delta$: paired difference to replay over the seeds both have, $^{*}$: its interval excludes 0; $^{\dagger}$: results from other code.}
\label{tab:digits_B0_C2}
\begin{tabular}{llrrrrrrr}
\toprule
method & config & seeds & avg mAP & last mAP & last tail mAP & forgetting & $\Delta$ avg mAP & $\Delta$ last mAP \\
\midrule
best & epochs=1 & 2 & {\boldmath$62 \pm 19$} & {\boldmath$66 \pm 19$} & {\boldmath$68 \pm 19$} & $3.0$ & $+10 \pm 6^{*}$ & $+10 \pm 6^{*}$ \\
replay$^{\dagger}$ & epochs=1 & 2 & $51 \pm 13$ & $56 \pm 13$ & $58 \pm 13$ & $3.0$ & -- & -- \\
my\_method & epochs=1 & 1 & $40.0$ & $45.0$ & $47.0$ & $3.0$ & $-10.0$ & $-10.0$ \\
\bottomrule
\end{tabular}
\end{table}
"""


def _document():
    seeds = report.per_seed(RECORDS, current="v1")
    return latex(report.leaderboard(seeds), report.paired(seeds, "replay"),
                 report.SESSION_METRIC)


def test_the_table_of_a_tiny_board_worked_by_hand():
    document = _document()
    assert document.startswith("% leaderboard.tex") and "\\usepackage{booktabs}" in document
    assert "\n" + EXPECTED_TABLE + "\n\\end{document}\n" in document
    assert document.count("\\begin{table}") == 1


def test_special_characters_are_escaped():
    assert escape("a_b & 50% #1 {x} $y ~ ^ \\") == (
        r"a\_b \& 50\% \#1 \{x\} \$y \textasciitilde{} \textasciicircum{} \textbackslash{}")


def test_render_writes_it(tmp_path):
    store = Store(tmp_path)
    for r in RECORDS:
        store.write(r)
    report.render(tmp_path, current="v1")
    assert (tmp_path / "leaderboard.tex").read_text() == _document()


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex is absent (the text is checked above, not compiled)")
def test_pdflatex_compiles_it_and_it_fits_the_page(tmp_path):
    (tmp_path / "leaderboard.tex").write_text(_document())
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                           "-no-shell-escape", "leaderboard.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "leaderboard.pdf").stat().st_size > 0
    assert "Overfull" not in (tmp_path / "leaderboard.log").read_text()
