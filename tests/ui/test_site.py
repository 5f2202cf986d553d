"""The lessons as a website (`make site`, scripts/build_site.py), built once with no network and checked
page by page in a real browser (Debian's Chromium, as the other browser tests).

Every page of both editions loads with no console error and no request leaving the site; every link,
image, script and stylesheet that points inside the site resolves (anchors included); each page's
language switch leads to its twin; the Chinese pages are drawn with a CJK font; search finds a lesson
word in each language; the sidebar follows 00's lesson table; each notebook's page says how to run it
and links to the notebook. Screenshots of lesson 03 in both editions: build/screenshots/site-*.png.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from browser_run import SCREENSHOTS, require_chromium

require_chromium()
pytestmark = pytest.mark.slow  # builds the site, a server and a browser: left out of `make check`

ROOT = Path(__file__).resolve().parents[2]
LESSON = "03_checkpoints_resume"  # the page whose two editions are screenshot
WORDS = {"en": "warm", "zh": "断点"}  # a lesson word that search must find in each edition
FOUND = {"en": "04_warm_start.html", "zh": "03_checkpoints_resume.html"}


def without_network() -> list[str]:
    """A command prefix that runs a command with no network at all (a network namespace of its own),
    or nothing where this machine does not allow one."""
    for prefix in (["unshare", "--net", "--"], ["unshare", "--map-root-user", "--net", "--"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return []


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The site, built once for this module into a temporary folder, offline where the machine allows,
    and the notebooks it was built from (others may be added while the tests run)."""
    notebooks = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    out = tmp_path_factory.mktemp("site") / "site"
    command = [*without_network(), sys.executable, str(ROOT / "scripts" / "build_site.py"), "--out", str(out)]
    start = time.perf_counter()
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f"the site did not build:\n{built.stdout}\n{built.stderr[-5000:]}"
    network = "no network" if command[0] == "unshare" else "network on"
    print(f"site built in {time.perf_counter() - start:.0f} s ({network})")
    return out, notebooks


@pytest.fixture(scope="module")
def site(built) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def base(site, free_port, start_server) -> str:
    """The site served over HTTP on a free loopback port."""
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    start_server(command, ready_url=f"http://127.0.0.1:{port}/index.html", log=site.parent / "server.log")
    return f"http://127.0.0.1:{port}"


def pages(site: Path) -> list[str]:
    """Every HTML page of the site, as paths under it (the theme's fragments in _static/ are not pages)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)


def target_problem(site: Path, url: str) -> str | None:
    """Why ``url`` (inside the site) is broken, or None: no such file, or no such anchor in it."""
    parsed = urllib.parse.urlsplit(url)
    path = site / urllib.parse.unquote(parsed.path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        return "no such file"
    anchor = urllib.parse.unquote(parsed.fragment)
    if anchor and path.suffix == ".html" and not re.search(rf'id="{re.escape(anchor)}"', path.read_text()):
        return f"no anchor #{anchor}"
    return None


TARGETS = """() => ({
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  resources: [...document.querySelectorAll('img[src], script[src], link[href]')].map(e => e.src || e.href),
  images: [...document.querySelectorAll('img')].filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => i.src.slice(0, 80)),
  lang: document.documentElement.lang,
  twin: document.querySelector('a.language-switch')?.href ?? null,
})"""


def test_every_page_loads_cleanly_and_every_link_inside_the_site_resolves(site, base, browser):
    problems: list[str] = []
    page = browser.new_page()
    current = {"path": ""}
    page.on("console", lambda m: m.type == "error" and problems.append(f"{current['path']}: console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"{current['path']}: page error: {e}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{current['path']}: {r.status} {r.url}"))

    def local_only(route):  # a page that needs the internet would not work offline
        if route.request.url.startswith(base) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            problems.append(f"{current['path']}: requested {route.request.url}")
            route.abort()

    page.route("**/*", local_only)
    all_pages = pages(site)
    assert len(all_pages) > 40, all_pages
    for path in all_pages:
        current["path"] = path
        page.goto(f"{base}/{path}", wait_until="load")
        edition = path.split("/")[0]
        if path in ("en/index.html", "zh/index.html"):  # leads to the edition's start page
            page.wait_for_url(f"{base}/{edition}/00_start_here.html")
            continue
        found = page.evaluate(TARGETS)
        for url in found["links"] + found["resources"]:
            if url.startswith(base) and (problem := target_problem(site, url.removeprefix(base))):
                problems.append(f"{path}: {problem}: {url}")
        problems += [f"{path}: image not shown: {src}" for src in found["images"]]
        if edition in ("en", "zh"):
            assert found["lang"] == {"en": "en", "zh": "zh-CN"}[edition], path
            other = {"en": "zh", "zh": "en"}[edition]
            twin = other + path[2:]
            if not (site / twin).exists():  # a page with no twin yet: the switch leads to the other start page
                twin = f"{other}/00_start_here.html"
            if found["twin"] != f"{base}/{twin}":
                problems.append(f"{path}: the language switch leads to {found['twin']}, not {twin}")
    page.close()
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:50])


def test_the_language_switch_leads_to_the_twin_and_chinese_is_drawn_with_a_cjk_font(base, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/en/{LESSON}.html")
    page.click("a.language-switch")
    page.wait_for_url(f"{base}/zh/{LESSON}.html")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    title = page.locator("article h1").first
    assert re.search(r"[\u4e00-\u9fff]", title.inner_text()), title.inner_text()
    # The fonts Chromium really drew the title and the run note with (not the CSS wish list).
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    for selector in ("article h1", "article .run-this p:last-child"):
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        assert any("CJK" in font["familyName"] and font["glyphCount"] for font in fonts), (selector, fonts)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"site-zh-{LESSON}.png"))
    page.click("a.language-switch")
    page.wait_for_url(f"{base}/en/{LESSON}.html")
    page.screenshot(path=str(SCREENSHOTS / f"site-en-{LESSON}.png"))
    page.close()


@pytest.mark.parametrize("edition", ["en", "zh"])
def test_search_finds_a_lesson_word(base, browser, edition):
    page = browser.new_page()
    page.goto(f"{base}/{edition}/search.html?q={urllib.parse.quote(WORDS[edition])}")
    page.wait_for_function("document.querySelectorAll('#search-results ul.search li').length > 0", timeout=20_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
    assert any(hit.split("#")[0].endswith(f"/{edition}/{FOUND[edition]}") for hit in hits), hits
    page.close()


@pytest.mark.parametrize("edition", ["en", "zh"])
def test_the_sidebar_follows_the_lesson_table_of_00(base, browser, edition):
    folder = ROOT / "notebooks" / ("zh" if edition == "zh" else "")
    start = json.loads((folder / "00_start_here.ipynb").read_text())
    text = "".join("".join(cell["source"]) for cell in start["cells"] if cell["cell_type"] == "markdown")
    table = ["00_start_here"] + re.findall(r"\]\((\d\d_\w+)\.ipynb\)", text)
    page = browser.new_page()
    page.goto(f"{base}/{edition}/00_start_here.html")
    links = page.eval_on_selector_all(".bd-sidenav a.reference", "links => links.map(a => a.pathname)")
    lessons = [link.rpartition("/")[2].removesuffix(".html") for link in links if re.search(r"/\d\d_\w+\.html$", link)]
    assert lessons[: len(table)] == table, lessons
    assert any("/exercises/solutions/" in link for link in links), links
    page.close()


@pytest.mark.parametrize("edition", ["en", "zh"])
def test_each_notebook_page_says_how_to_run_it_and_links_to_the_notebook(built, edition):
    site, all_notebooks = built
    folder = ROOT / "notebooks" / ("zh" if edition == "zh" else "")
    notebooks = [p for p in all_notebooks if p.is_relative_to(folder) and p.relative_to(folder).parts[0] != "zh"]
    assert len(notebooks) > 20
    for notebook in notebooks:
        name = notebook.relative_to(folder).with_suffix(".html")
        html = (site / edition / name).read_text()
        note = re.search(r'<div class="[^"]*run-this[^"]*">(.*?)</div>', html, re.S)
        assert note, f"{name}: no note on how to run it"
        text = re.sub(r"<[^>]+>", "", note.group(1))
        assert notebook.relative_to(ROOT).as_posix() in text, name
        assert ("make lab-zh" if edition == "zh" else "make lab") in text, name
        download = re.search(r'href="([^"]+\.ipynb)"', note.group(1)).group(1)
        stored = json.loads((site / edition / name).parent.joinpath(download).read_text())
        assert stored["cells"][0]["source"] == json.loads(notebook.read_text())["cells"][0]["source"], name
