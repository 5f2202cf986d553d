"""Build the lessons as a static website: `make site`, into build/site/.

    python scripts/build_site.py               # build/site/{index.html, en/, zh/}
    python scripts/build_site.py --out DIR     # elsewhere (the site test builds into a temporary folder)

Two Sphinx builds (docs/site/conf.py), one per edition, run side by side: English from notebooks/,
Chinese from notebooks/zh/, each with its own language and search index, both from the stored
outputs (nothing is executed, nothing is downloaded). Warnings fail the build. Each build reads a
copy of its notebooks, taken at the start, so a notebook re-executed meanwhile cannot change a
build halfway. The root index.html lets the reader choose the edition.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "docs" / "site"
# edition: (Sphinx language, the folder of its notebooks, folders inside it that belong to another edition)
EDITIONS = {"en": ("en", ROOT / "notebooks", ["zh"]), "zh": ("zh_CN", ROOT / "notebooks" / "zh", [])}
PAGES_OUTSIDE_NOTEBOOKS = {ROOT / "docs" / "glossary.md": "glossary.md"}  # see site_pages.SITE_FILES


def stage(notebooks: Path, others: list[str], src: Path) -> None:
    """Copy the edition's notebooks (and the glossary) into ``src``, the build's source folder."""
    for path in sorted(notebooks.rglob("*.ipynb")):
        relative = path.relative_to(notebooks)
        if relative.parts[0] in others or ".ipynb_checkpoints" in relative.parts:
            continue
        (src / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, src / relative)
    for path, name in PAGES_OUTSIDE_NOTEBOOKS.items():
        shutil.copy2(path, src / name)


def build(out: Path) -> None:
    work = out.with_name(out.name + "-work")  # sources, doctrees and myst-nb's jupyter_execute/
    shutil.rmtree(work, ignore_errors=True)
    builds = {}
    for name, (language, notebooks, others) in EDITIONS.items():
        stage(notebooks, others, work / name / "src")
        log = open(work / name / "sphinx.log", "w")  # noqa: SIM115 (closed below)
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-c", str(CONF)]
        command += ["-D", f"language={language}", "-d", str(work / name / "doctrees")]
        command += [str(work / name / "src"), str(work / name / "html")]
        builds[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    failed = []
    for name, (process, log) in builds.items():
        process.wait()
        log.close()
        output = (work / name / "sphinx.log").read_text()
        if output.strip():
            print(f"--- {name}: sphinx-build says:\n{output}", file=sys.stderr)
        if process.returncode:
            failed.append(name)
    if failed:
        sys.exit(f"the site was not built: sphinx-build failed for {', '.join(failed)} (warnings count as errors)")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in EDITIONS:
        shutil.copytree(work / name / "html", out / name)
    shutil.copy2(CONF / "root_index.html", out / "index.html")
    (out / ".nojekyll").touch()  # GitHub Pages: serve _static/ and _images/ as they are
    shutil.rmtree(work)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="default: build/site")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    build(args.out.resolve())
    print(f"site built in {time.perf_counter() - start:.0f} s: open {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
