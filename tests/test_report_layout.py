"""The HTML pages fit a 1,280 px screen: headless Chromium lays out comparison.html and run
reports (binary, eight classes, ordinal grades) from hand-written runs, and nothing may need
horizontal scrolling, neither the page (beside its vertical scroll bar) nor any table inside.

The measurement is a script added to a copy of each page (the pages themselves hold none): on
``load`` it writes the widths into the DOM, which ``chromium --headless --dump-dom`` prints.
Skipped, with the reason, where no Chromium is installed (CI installs it: ``.ci/run``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from medbalance.reporting.report import write_report
from medbalance.workflows.compare import collect
from test_compare import _fake_run
from test_compare_multiclass import _fake_graded_run
from test_report import _gallery, make_run
from test_report_multiclass import _ordinal_run

WIDTH, HEIGHT = 1280, 900


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH "
    "and /usr/bin/chromium); install it with apt-get install chromium",
)

_PROBE = """<script>
window.addEventListener("load", function () {
  var root = document.documentElement, boxes = [];
  document.querySelectorAll(".wide").forEach(function (box, i) {
    if (box.scrollWidth > box.clientWidth + 1) {  // 1 px: rounding of sub-pixel widths
      boxes.push({index: i, scroll: box.scrollWidth, client: box.clientWidth,
                  text: box.textContent.slice(0, 60)});
    }
  });
  var out = document.createElement("pre");
  out.id = "layout-probe";
  out.textContent = JSON.stringify({page: root.scrollWidth, viewport: root.clientWidth,
                                    inner: window.innerWidth, boxes: boxes});
  document.body.appendChild(out);
});
</script>"""


def _layout(page: Path, profile: Path) -> dict[str, Any]:
    """The widths of ``page`` laid out in a WIDTH x HEIGHT headless Chromium window."""
    assert CHROMIUM is not None
    copy = page.with_name(f"measured-{page.name}")  # same folder: relative links still resolve
    text = page.read_text(encoding="utf-8")
    assert text.count("</body>") == 1, page
    copy.write_text(text.replace("</body>", f"{_PROBE}</body>"), encoding="utf-8")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--dump-dom",
    ]
    done = subprocess.run(
        [CHROMIUM, *flags, copy.as_uri()], capture_output=True, text=True, timeout=120
    )
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no measurement from {page.name} (exit {done.returncode}): {done.stderr[-800:]}"
    layout: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    assert layout["inner"] == WIDTH, layout  # the window really is 1,280 px wide
    return layout


def _assert_fits(page: Path, profile: Path) -> None:
    layout = _layout(page, profile)
    assert layout["page"] <= layout["viewport"], f"{page.name} scrolls sideways: {layout}"
    assert not layout["boxes"], f"{page.name}: tables that scroll sideways: {layout['boxes']}"


def test_the_measurement_sees_a_page_that_overflows(tmp_path: Path) -> None:
    wide = tmp_path / "wide.html"
    wide.write_text(
        '<!DOCTYPE html><html><body><div class="wide" style="overflow-x:auto">'
        '<table><tr><td style="min-width:1600px">x</td></tr></table></div>'
        '<div style="width:1500px">y</div></body></html>'
    )
    layout = _layout(wide, tmp_path / "profile")
    assert layout["page"] > layout["viewport"] and len(layout["boxes"]) == 1, layout


def test_comparison_pages_fit_1280_px(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    for remedy, shift in (("baseline", 0.0), ("oversample", 0.1), ("weighted-ce", 0.2)):
        for seed in (0, 1):  # two seeds: every cell holds mean ± sd and the CI
            _fake_run(binary, remedy, seed, shift=shift)
    collect(binary, note="SYNTHETIC data: generated images, not medical ones")
    _assert_fits(binary / "comparison.html", tmp_path / "profile1")
    graded = tmp_path / "graded"  # ordinal: the most columns (kappa, MAE, within-one too)
    for remedy, miss in (("baseline", 3), ("oversample", 1), ("ldam-drw", 2)):
        for seed in (0, 1):
            _fake_graded_run(graded, remedy, seed, miss=miss)
    collect(graded)
    _assert_fits(graded / "comparison.html", tmp_path / "profile2")


def test_run_reports_fit_1280_px(tmp_path: Path) -> None:
    binary = make_run(tmp_path / "runs" / "baseline" / "seed0")
    write_report(binary, gallery_errors=_gallery(8, False), gallery_cam=_gallery(8, True))
    _assert_fits(binary / "report.html", tmp_path / "profile1")
    eight = make_run(tmp_path / "eight", tuple(f"class_{c}" for c in "abcdefgh"))
    write_report(eight)
    _assert_fits(eight / "report.html", tmp_path / "profile2")
    ordinal = _ordinal_run(tmp_path / "grades")
    write_report(ordinal)
    _assert_fits(ordinal / "report.html", tmp_path / "profile3")
