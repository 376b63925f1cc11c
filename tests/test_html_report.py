"""report.html: its content from fake records, and the page in a real browser.

The browser test drives Debian's chromium headless through Selenium and Debian's
chromedriver (``apt-get install chromium chromium-driver``; .ci/run installs them): it loads
the page from a ``file://`` path, checks that the console logged no error, that every image
decodes, that a header click sorts its table and that the toggle shows the other columns,
and takes a screenshot. Where chromium or chromedriver is absent it is skipped.
"""
import re
import shutil

import pytest

from benchmarks import report
from benchmarks.runner.store import Store
from test_report import MULTI, SINGLE, _full_record

METHODS = ("replay", "lwf", "better")


@pytest.fixture
def folder(tmp_path):
    """A rendered results folder: two streams, three methods, three seeds each, and a failed
    fourth seed of lwf on the multi-label stream."""
    store = Store(tmp_path)
    for stream in (MULTI, SINGLE):
        for i, method in enumerate(METHODS):
            for seed in (0, 1, 2):
                store.write(_full_record(method, seed, stream, shift=3 * i + seed * (i + 1)))
    failed = _full_record("lwf", 3, MULTI, shift=0)
    store.write({**failed, "status": "failed", "error": "ValueError: loss is NaN",
                 "sessions": [], "summary": None})
    report.render(tmp_path, current="v1")
    return tmp_path


def test_the_page_holds_summary_tables_provenance_and_embedded_figures(folder):
    html = (folder / "report.html").read_text()
    assert html.index("Which method wins overall") < html.index(f"<h2>{MULTI}")
    for stream in ("digits_B0_C2", "digits_lt_B0_C2"):
        assert f'id="{stream}-board"' in html and f'id="{stream}-paired"' in html
    # every figure of plots/ (4 per stream, the summary's) embedded; nothing loaded elsewhere
    assert html.count('src="data:image/png;base64,') == len(list((folder / "plots").iterdir()))
    assert len(list((folder / "plots").glob("summary_*.png"))) >= 2
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    # better - replay: per-seed avg_mAP differences 8, 7+... = shift (3i + s(i+1)) gaps:
    # seeds 0, 1, 2 give 6, 8, 10 -> mean 8, s = 2, t(0.975, 2) = 4.3027 -> 4.97, significant;
    # shown to the interval's one significant digit
    assert '<td class="better" data-value="8.0">+8 ± 5 *</td>' in html
    assert "code versions" in html and 'title="config: ; tuning: defaults' not in html
    assert html.count('title="threads: 2; tuning: defaults; pretrained: False; seeds: 0, 1, 2; '
                      'code versions: v1; failed cells: 0"') == 5
    assert html.count('seeds: 0, 1, 2; code versions: v1; failed cells: 1"') == 1  # lwf
    assert "19 cells (1 failed: see per_seed.csv)" in html


def test_an_empty_folder_gets_a_page_saying_so(tmp_path):
    (tmp_path / "records").mkdir()
    report.render(tmp_path)
    assert "No finished cells yet." in (tmp_path / "report.html").read_text()


def _browser():
    """A headless chromium driven by Selenium, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[test]')")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("chromium or chromedriver is absent (apt-get install chromium "
                    "chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def test_the_page_in_a_headless_chromium(folder, tmp_path):
    browser = _browser()
    try:
        browser.get((folder / "report.html").as_uri())
        assert [entry for entry in browser.get_log("browser")
                if entry["level"] == "SEVERE"] == []
        images = browser.execute_script(
            "return [...document.images].map(i => i.complete && i.naturalWidth)")
        assert len(images) == len(list((folder / "plots").iterdir()))
        assert all(width > 0 for width in images)

        table = browser.find_element("id", "digits_B0_C2-board")
        column = _header(table, "last mAP")
        values = lambda: [float(row.find_elements("tag name", "td")[column]  # noqa: E731
                                .get_attribute("data-value"))
                          for row in table.find_elements("css selector", "tbody tr")]
        table.find_elements("tag name", "th")[column].click()
        assert values() == sorted(values(), reverse=True) and len(values()) == 3
        table.find_elements("tag name", "th")[column].click()
        assert values() == sorted(values())  # the second click: ascending

        methods = lambda: [row.find_element("tag name", "td").text  # noqa: E731
                           for row in table.find_elements("css selector", "tbody tr")]
        table.find_elements("tag name", "th")[0].click()
        assert methods() == sorted(METHODS)

        extra = table.find_element("css selector", "th.extra")
        assert not extra.is_displayed()
        browser.find_element("css selector", 'button[data-table="digits_B0_C2-board"]').click()
        assert extra.is_displayed()
        assert browser.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
        assert [entry for entry in browser.get_log("browser")
                if entry["level"] == "SEVERE"] == []
    finally:
        browser.quit()


def _header(table, name: str) -> int:
    """The index of the column whose header is ``name``."""
    return [th.get_attribute("textContent") for th in
            table.find_elements("tag name", "th")].index(name)
