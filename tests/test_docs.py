"""The documentation site builds with warnings as errors, every page renders in headless
Chromium, and every internal link lands on a built file (and on its anchor, when it names one).

The site is built into a temporary folder with ``mkdocs build --strict`` (what ``make docs``
runs); each page is then opened with ``chromium --headless --dump-dom`` and its rendered main
content checked. Skipped, with the reason, when mkdocs (the ``docs`` extra) or Chromium is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _find_chromium()
HAS_MKDOCS = all(
    importlib.util.find_spec(name) is not None
    for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
)

pytestmark = [
    pytest.mark.skipif(
        not HAS_MKDOCS,
        reason="mkdocs, mkdocs-material or mkdocstrings[python] is not installed; "
        "install the docs extra: pip install -e '.[docs]'",
    ),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH "
        "and /usr/bin/chromium); install it with apt-get install chromium",
    ),
]

# text that means a page shows a Python failure or an unrendered mkdocstrings directive
_ERROR_TEXT = re.compile(
    r"Traceback \(most recent call last\)|ModuleNotFoundError|ImportError|"
    r"CollectionError|^\s*::: ",
    re.M,
)
_MAIN = re.compile(r'<article class="md-content__inner[^"]*">(.*?)</article>', re.S)


class _Links(HTMLParser):
    """Collects ``<a href>`` targets and the ids a page defines."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("name"):
            self.ids.add(str(values["name"]))
        if tag == "a" and values.get("href") is not None:
            self.hrefs.append(str(values["href"]))


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-3000:]}"
    return out


def _pages(site: Path) -> list[Path]:
    # 404.html is served from the site root by a web server; its links are root-relative
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def test_the_site_has_the_expected_pages(site: Path) -> None:
    names = {p.relative_to(site).as_posix() for p in _pages(site)}
    for expected in (
        "index.html",
        "getting-started.html",
        "commands/train.html",
        "commands/evaluate.html",
        "remedies.html",
        "run-folder.html",
        "api/medbalance.html",
        "api/samplers.html",
        "api/losses.html",
        "api/thresholds.html",
        "api/metrics.html",
        "tutorials/pneumonia.html",
        "tutorials/weighted-binary.html",
        "tutorials/three-class.html",
        "tutorials/ordinal.html",
    ):
        assert expected in names, f"{expected} was not built; built: {sorted(names)}"


def _render(page: Path, profile: Path) -> str:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
    ]
    done = subprocess.run(
        [CHROMIUM, *flags, page.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"chromium failed on {page}: {done.stderr[-800:]}"
    return done.stdout


def test_every_page_renders_in_chromium(site: Path, tmp_path: Path) -> None:
    pages = _pages(site)

    def render(k: int) -> list[tuple[Path, str]]:
        # two browsers at a time, each with its own profile, one page after another
        profile = tmp_path / f"profile{k}"
        return [(page, _render(page, profile)) for page in pages[k::2]]

    with ThreadPoolExecutor(max_workers=2) as pool:
        rendered = [row for rows in pool.map(render, range(2)) for row in rows]
    for page, dom in rendered:
        name = page.relative_to(site).as_posix()
        main = _MAIN.search(dom)
        assert main, f"{name}: no main content (<article class='md-content__inner'>) in the DOM"
        text = re.sub(r"<[^>]+>", " ", main.group(1))
        text = re.sub(r"\s+", " ", text).strip()
        assert len(text) > 80, f"{name}: main content is nearly empty: {text!r}"
        error = _ERROR_TEXT.search(re.sub(r"<[^>]+>", "\n", main.group(1)))
        assert error is None, f"{name}: shows error text {error.group(0)!r}"


def test_every_internal_link_resolves(site: Path) -> None:
    parsed = {page: _parse(page) for page in _pages(site)}
    broken: list[str] = []
    for page, links in parsed.items():
        name = page.relative_to(site).as_posix()
        for href in links.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("/"):
                continue  # external (or root-relative, which a file:// site cannot have)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{name}: {href} (no file {target})")
                continue
            anchor = unquote(parts.fragment)
            if anchor and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if anchor not in ids:
                    broken.append(f"{name}: {href} (no id {anchor!r} in {target.name})")
    assert not broken, "broken internal links:\n" + "\n".join(broken)
