"""The guide builds with ``mkdocs build --strict`` (no broken link, no missing page), offline, and shows in a browser.

The config reference is generated from the config models at build time (``docs/hooks.py``):
every key of every table appears with a non-empty description.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _hooks():
    spec = importlib.util.spec_from_file_location("eetrend_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {"NO_MKDOCS_2_WARNING": "1", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.resources: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2", "h3"):
            self._in_heading = True
            self.headings.append("")
        if tag in ("script", "img", "iframe") and attrs.get("src"):
            self.resources.append(attrs["src"])
        if tag == "link" and attrs.get("rel") in ("stylesheet", "preload", "icon") and attrs.get("href"):
            self.resources.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3"):
            self._in_heading = False

    def handle_data(self, data):
        if self._in_heading:
            self.headings[-1] += data


def _parse(path: Path) -> _Text:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_page_is_built_and_nothing_is_fetched_from_the_network(site):
    for page in ["index.html", "getting-started/index.html", "config-reference/index.html", "api/index.html",
                 "FIDELITY/index.html", "BREAKS/index.html", "performance/index.html"]:
        assert (site / page).is_file(), page
    for page in site.rglob("*.html"):
        remote = [url for url in _parse(page).resources if re.match(r"(https?:)?//", url)]
        assert remote == [], f"{page.relative_to(site)} loads {remote}"
    assert not (site / "search").exists(), "the search plugin is off (it fetches nothing, but needs a server)"
    assert not (site / "hooks.py").exists()


def test_the_config_reference_lists_every_key_of_every_table_with_its_description(site):
    hooks = _hooks()
    markdown = hooks.config_reference_markdown()
    html = (site / "config-reference" / "index.html").read_text(encoding="utf-8")
    tables = hooks.sections()
    assert {table for table, _, _ in tables} >= {"study", "region", "composite", "export", "earthengine", "paths",
                                                 "trend", "dask", "dask.slurm", "notify", "notify.email"}
    for table, description, model in tables:
        assert description.strip(), f"[{table}] has no description"
        assert f"[{table}]" in html
        for name, field in model.model_fields.items():
            assert field.description and field.description.strip(), f"{table}.{name} has no description"
            if hooks._model_of(field.annotation) is None:
                row = re.search(rf"^\| `{name}` \|.*\|$", markdown.split(f"## `[{table}]`")[1].split("\n## ")[0],
                                re.M)
                assert row, f"{table}.{name} is missing from the reference"
                assert f"<code>{name}</code>" in html
    # a default and a constraint read from the code, not written by hand
    assert re.search(r"\| `settle_days` \| integer \| `14` \| .*\(>= 0, <= 366\) \|", markdown)
    assert '| `destination` | "drive" \\| "gcs" \\| "direct" | `"drive"` |' in markdown


def _render(url: str, png: Path) -> tuple[str, np.ndarray]:
    profile = png.parent / f"{png.stem}-profile"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars", f"--user-data-dir={profile}"]
    dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout
    subprocess.run([*common, f"--screenshot={png}", "--window-size=1200,900", url], check=True,
                   capture_output=True, timeout=120)
    import matplotlib.image

    return dom, matplotlib.image.imread(png)[..., :3]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize(("page", "expected"), [
    ("index.html", ["eetrend", "Where to start"]),
    ("config-reference/index.html", ["Config reference", "[study]", "settle_days", "[dask.slurm]"]),
    ("api/index.html", ["Python API", "fit_stack", "trend_rasters"]),
])
def test_the_home_page_and_the_reference_pages_show_in_chromium(site, tmp_path, page, expected):
    dom, image = _render((site / page).as_uri(), tmp_path / "page.png")
    text = re.sub(r"<[^>]+>", " ", dom)
    for words in expected:
        assert words in text, f"{page} does not show {words!r}"
    # styled, not blank: the theme's stylesheet applied (a coloured header bar) and text drawn on the page
    assert image.shape[:2] == (900, 1200)
    assert image.std() > 0.05
    header = image[:40, :, :]
    assert (np.abs(header - header.mean(axis=2, keepdims=True)).max(axis=2) > 0.1).mean() > 0.5, \
        "the Material header (a coloured bar) is missing: the stylesheet did not load"
