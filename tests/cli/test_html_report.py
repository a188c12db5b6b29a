"""Issue 18: the HTML report links each violated cell to its counterexample, tells mainline and
variant rows apart, and has the property legend at the top.  Checked on the page's structure in
pure Python (always) and on the DOM headless Chromium builds from it (Debian's ``chromium``
package; skipped only when no chromium binary is installed)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from memtypes.check import registry
from memtypes.check.runner import run_matrix
from memtypes.report import html as rhtml


class Page(HTMLParser):
    """The parts of the page the checks need: ids in order, links, cells, rows."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.order: list[str] = []  # "legend", "matrix" in document order
        self.rows: list[str] = []   # class of each matrix row
        self.cells: list[dict] = []  # each td of a matrix: class and link
        self._td: dict | None = None
        self._matrix = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
            if a["id"] == "legend":
                self.order.append("legend")
        if tag == "table" and "matrix" in (a.get("class") or ""):
            self._matrix += 1
            self.order.append("matrix")
        if self._matrix and tag == "tr" and a.get("class"):
            self.rows.append(a["class"])
        if self._matrix and tag == "td":
            self._td = {"class": a.get("class") or "", "href": None}
            self.cells.append(self._td)
        if self._td is not None and tag == "a":
            self._td["href"] = a.get("href")

    def handle_endtag(self, tag):
        if tag == "td":
            self._td = None
        if tag == "table" and self._matrix:
            self._matrix -= 1


def check_structure(html: str) -> Page:
    page = Page()
    page.feed(html)
    assert page.order and page.order[0] == "legend", page.order[:3]
    violated = [c for c in page.cells if c["class"] == "violated"]
    assert violated, "the selection should have violations"
    for c in violated:
        assert c["href"] and c["href"].startswith("#cx-"), c
        assert c["href"][1:] in page.ids, f"{c['href']} has no target"
    assert all(c["href"] is None for c in page.cells if c["class"] != "violated")
    assert "mainline" in page.rows and "variant" in page.rows
    assert len(set(i for i in page.ids if i.startswith("cx-"))) == len(
        [i for i in page.ids if i.startswith("cx-")])
    return page


@pytest.fixture(scope="module")
def page_html() -> str:
    fams = [f for f in registry.families() if f.name in ("mte", "passthrough")]
    m = run_matrix(fams, kernel="7.1", workers=1, max_states=5000)
    return rhtml.render_check(m)


def test_html_structure(page_html):
    page = check_structure(page_html)
    # the headline comes before the legend too: mainline first
    assert page_html.index("mainline:") < page_html.index('id="legend"')


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium (Debian package 'chromium') "
                                                "is not installed")
def test_html_in_headless_chromium(page_html, tmp_path):
    f = tmp_path / "report.html"
    f.write_text(page_html, encoding="utf-8")
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--user-data-dir=" + str(tmp_path / "profile"), "--dump-dom",
                        f.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "<table" in r.stdout
    check_structure(r.stdout)
