"""Open every page of the built book in headless Chromium and check it as a reader's browser shows it.

Usage::

    python scripts/browser_check.py _build/quick/_build/html [--config _config.yml] [--mathjax DIR]

(``make browser-check`` runs it on the quick-mode build.) For every HTML page it asserts:

- no JavaScript error in the console;
- every ``<img>`` loaded (the browser decoded a picture);
- math rendered: MathJax output (``mjx-container``), and no MathJax error, wherever the
  page's source has ``$...$`` or the page holds math;
- on a page with exercises, a solution dropdown opens when its button is clicked;
- no paragraph shows a Markdown pipe table as raw text (``| a | b |`` followed by ``|---|``, which
  smart quotes may have turned into ``|—|``),
  as MyST-NB renders a ``text/markdown`` output whose Markdown format has no tables;
- the Colab and Binder launch links point at the page's own ``.ipynb`` in the repository
  and branch named in ``_config.yml`` (and a page that is no notebook offers none).

It needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and
selenium. The site is served from a local HTTP server. With ``--mathjax DIR`` (a copy of the
``mathjax@3`` npm package) MathJax is served from that copy instead of its CDN, so math is
checked without a network; resources from other hosts that cannot be reached are listed
as notes, not failures, because they are the network's and not the site's.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml

# The flags a headless Chromium needs here: no sandbox as root, no GPU, and none of its own
# network traffic (updates, sync, QUIC), so that every request comes from the page.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1600"]
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
LOCAL_MATHJAX = "/__mathjax__/"
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
SKIPPED_FOLDERS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
MATH_IN_SOURCE = re.compile(r"\$\$.+?\$\$|(?<![\\$\w])\$(?=\S)[^$\n]+?(?<=\S)\$(?![\w$])", re.DOTALL)
# A cell of a pipe table's delimiter row inside raw table text: "|---|", "| --- |", "|:---:|", or, as
# Sphinx's smart quotes turn "---" into an em dash and "--" into an en dash, "|—|" and "|—:|".
PIPE_TABLE_DELIMITER = re.compile(r"\|\s*:?(?:-{3,}|[\u2013\u2014][-\u2013\u2014]*)\s*:?\s*\|")


@dataclass
class PageReport:
    """What the check found on one page: ``problems`` fail it, ``notes`` do not."""

    page: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Repository:
    """Where the notebooks live, as _config.yml names it."""

    org: str
    name: str
    branch: str
    path_to_book: str

    @classmethod
    def from_config(cls, config_path: Path) -> "Repository":
        config = yaml.safe_load(config_path.read_text())
        repository = config.get("repository") or {}
        url = repository.get("url", "")
        parts = urlparse(url).path.strip("/").split("/")
        if len(parts) != 2:
            raise ValueError(f"{config_path}: repository.url {url!r} should be https://github.com/ORG/REPO")
        return cls(parts[0], parts[1], str(repository.get("branch", "main")),
                   str(repository.get("path_to_book", "") or "").strip("/"))

    def notebook_path(self, page: str) -> str:
        """The repository path of the notebook behind ``page`` (``book/ch01/x.html`` -> ``book/ch01/x.ipynb``)."""
        relative = str(Path(page).with_suffix(".ipynb"))
        return f"{self.path_to_book}/{relative}" if self.path_to_book else relative


def find_browser() -> tuple[str, str] | None:
    """Paths of Chromium and its WebDriver, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def missing_requirements() -> str | None:
    """Why the check cannot run here, or None when it can."""
    if find_browser() is None:
        return "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site; with a MathJax copy, serves it under LOCAL_MATHJAX and points pages at it."""

    mathjax: Path | None = None

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (the base class's name)
        pass

    def translate_path(self, path: str) -> str:
        if self.mathjax is not None and path.startswith(LOCAL_MATHJAX):
            return str(self.mathjax / path[len(LOCAL_MATHJAX):].split("?")[0])
        return super().translate_path(path)

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if self.mathjax is None or path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(MATHJAX_CDN.encode(), LOCAL_MATHJAX.encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)


class LocalSite:
    """A local HTTP server for ``root`` on 127.0.0.1, in a thread; use as a context manager."""

    def __init__(self, root: Path, mathjax: Path | None = None):
        handler = type("Handler", (_Handler,), {"mathjax": mathjax})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      functools.partial(handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalSite":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def site_pages(root: Path) -> list[str]:
    """Every content page of the site, as paths relative to ``root``."""
    pages = []
    for path in sorted(root.rglob("*.html")):
        relative = path.relative_to(root)
        if relative.name in SKIPPED_PAGES or SKIPPED_FOLDERS & set(relative.parts[:-1]):
            continue
        pages.append(relative.as_posix())
    return pages


def page_source(root: Path, page: str) -> Path | None:
    """The page's source as the site keeps it under _sources/ (.ipynb or .md), if any."""
    stem = Path(page).with_suffix("")
    for suffix in (".ipynb", ".md", ".md.txt", ".rst.txt"):
        candidate = root / "_sources" / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def source_has_math(source: Path | None) -> bool:
    """Whether the prose of a source (markdown cells of a notebook; all of a .md) holds ``$...$``."""
    if source is None:
        return False
    if source.suffix == ".ipynb":
        cells = json.loads(source.read_text()).get("cells", [])
        text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                         for c in cells if c.get("cell_type") == "markdown")
    else:
        text = source.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks and directives' code
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code and roles
    return bool(MATH_IN_SOURCE.search(text))


def is_external(url: str, site_url: str) -> bool:
    return bool(re.match(r"https?://", url)) and not url.startswith(site_url)


# JavaScript run in the page. Each returns a JSON-able value to Python.
_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
Promise.all(images.map(img => { img.loading = 'eager'; return img.decode().catch(() => null); })).then(() =>
  done(images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'))));
"""
_MATHJAX_JS = """
const done = arguments[arguments.length - 1];
const count = () => ({present: true,
  rendered: document.querySelectorAll('mjx-container').length,
  errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent).slice(0, 3),
  pending: document.querySelectorAll('.math:not(:has(mjx-container))').length});
const started = Date.now();
(function wait() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done(count()), e => done({present: true, failed: String(e)}));
  } else if (Date.now() - started > 15000) {
    done({present: false});
  } else { setTimeout(wait, 100); }
})();
"""
_PARAGRAPHS_JS = """
return {paragraphs: Array.from(document.querySelectorAll('p')).map(p => p.textContent),
        tables: document.querySelectorAll('table').length};
"""
_LAUNCH_JS = """
return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)
  .filter(h => h.includes('colab.research.google.com') || h.includes('/v2/gh/'));
"""


def raw_pipe_tables(paragraphs: list[str]) -> list[str]:
    """The paragraphs (their text) that are a Markdown pipe table left unrendered: text that starts with
    ``|`` and holds a delimiter row such as ``|---|``, ``| --- |`` or, after smart quotes, ``|—|``."""
    return [text for text in paragraphs if text.lstrip().startswith("|") and PIPE_TABLE_DELIMITER.search(text)]


def check_launch_links(links: list[str], page: str, is_notebook: bool, repository: Repository,
                       repo_root: Path | None) -> list[str]:
    """Problems with a page's Colab and Binder links (empty when they are right)."""
    colab = [link for link in links if "colab.research.google.com" in link]
    binder = [link for link in links if "/v2/gh/" in link]
    if not is_notebook:
        return [f"offers a launch link but is no notebook: {link}" for link in colab + binder]
    notebook = repository.notebook_path(page)
    problems = []
    if repo_root is not None and not (repo_root / notebook).is_file():
        problems.append(f"its notebook {notebook} is not in the repository at {repo_root}")
    expected_colab = f"/github/{repository.org}/{repository.name}/blob/{repository.branch}/{notebook}"
    if not colab:
        problems.append("no Colab launch link")
    problems += [f"Colab link {link} does not open {expected_colab}" for link in colab
                 if not urlparse(link).path.endswith(expected_colab)]
    expected_binder = f"/v2/gh/{repository.org}/{repository.name}/{repository.branch}"
    if not binder:
        problems.append("no Binder launch link")
    for link in binder:
        parsed = urlparse(link)
        if parsed.path != expected_binder or not parsed.query.endswith(f"tree/{notebook}"):
            problems.append(f"Binder link {link} does not open {notebook} in {expected_binder}")
    return problems


def check_dropdown(driver) -> str | None:
    """Click the first solution dropdown; a problem in words, or None when it opened."""
    from selenium.webdriver.common.by import By

    solutions = driver.find_elements(By.CSS_SELECTOR, ".solution.dropdown, .admonition.dropdown")
    if not solutions:
        return "has exercises but no solution dropdown"
    solution = solutions[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", solution)
    body = [e for e in solution.find_elements(By.XPATH, "./*") if "admonition-title" not in (e.get_attribute("class") or "")]
    if not body:
        return "its first solution dropdown is empty"
    if body[0].is_displayed():
        return "its first solution is shown before it is opened (not folded)"
    buttons = solution.find_elements(By.CSS_SELECTOR, "button.toggle-button") or \
        solution.find_elements(By.CSS_SELECTOR, ".admonition-title")
    if not buttons:
        return "its first solution dropdown has no button"
    buttons[0].click()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not body[0].is_displayed():
        time.sleep(0.1)
    return None if body[0].is_displayed() else "its first solution dropdown does not open when clicked"


def console_errors(driver, site_url: str, report: PageReport) -> None:
    for entry in driver.get_log("browser"):
        if entry.get("level") != "SEVERE":
            continue
        message = entry.get("message", "")
        url = message.split(" ", 1)[0]
        if "Failed to load resource" in message and urlparse(url).path == "/favicon.ico":
            continue  # the browser's own request, made for every site that names no icon
        if "Failed to load resource" in message and is_external(url, site_url):
            report.notes.append(f"external resource not reached: {url}")
        else:
            report.problems.append(f"console error: {message[:300]}")


def start_browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


def check_page(driver, site: LocalSite, root: Path, page: str, repository: Repository,
               repo_root: Path | None) -> PageReport:
    from selenium.webdriver.common.by import By

    report = PageReport(page)
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(site.url + page)
    source = page_source(root, page)

    broken = driver.execute_async_script(_IMAGES_JS)
    report.problems += [f"image did not load: {src}" for src in broken]
    report.checked.append(f"{len(driver.find_elements(By.TAG_NAME, 'img'))} images")

    math_in_page = bool(driver.find_elements(By.CSS_SELECTOR, ".math"))
    if math_in_page or source_has_math(source):
        state = driver.execute_async_script(_MATHJAX_JS)
        if not state.get("present"):
            report.problems.append("the source has math but MathJax did not load")
        elif state.get("failed"):
            report.problems.append(f"MathJax failed: {state['failed']}")
        else:
            if state["rendered"] == 0:
                report.problems.append("the source has math but the page shows no MathJax output")
            if state["pending"]:
                report.problems.append(f"{state['pending']} math element(s) left unrendered")
            report.problems += [f"MathJax error: {text}" for text in state["errors"]]
            report.checked.append(f"{state['rendered']} formulas")

    if driver.find_elements(By.CSS_SELECTOR, ".exercise"):
        problem = check_dropdown(driver)
        if problem:
            report.problems.append(problem)
        report.checked.append("a solution dropdown")

    content = driver.execute_script(_PARAGRAPHS_JS)
    report.problems += [f"a pipe table shown as raw text, not as a table: {' '.join(raw.split())[:100]!r}"
                        for raw in raw_pipe_tables(content["paragraphs"])]
    if content["tables"]:
        report.checked.append(f"{content['tables']} tables")

    is_notebook = source is not None and source.suffix == ".ipynb" and not (root / "_sources" / Path(page).with_suffix(".md")).exists()
    report.problems += check_launch_links(driver.execute_script(_LAUNCH_JS), page, is_notebook, repository, repo_root)
    if is_notebook:
        report.checked.append("launch links")

    console_errors(driver, site.url, report)
    return report


def check_site(root: Path, repository: Repository, mathjax: Path | None = None, repo_root: Path | None = None,
               pages: list[str] | None = None) -> list[PageReport]:
    """Check every page of the built site in ``root``; one report per page."""
    reason = missing_requirements()
    if reason:
        raise RuntimeError(reason)
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} holds no built site (no index.html); build it first, e.g. make book-quick")
    reports = []
    with tempfile.TemporaryDirectory(prefix="browser-check-") as profile, LocalSite(root, mathjax) as site:
        driver = start_browser(Path(profile))
        try:
            for page in pages if pages is not None else site_pages(root):
                reports.append(check_page(driver, site, root, page, repository, repo_root))
        finally:
            driver.quit()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built HTML, e.g. _build/quick/_build/html")
    parser.add_argument("--config", type=Path, default=Path("_config.yml"), help="the book's _config.yml")
    parser.add_argument("--repo-root", type=Path, default=Path("."),
                        help="the repository checkout, to check that each launched notebook exists")
    parser.add_argument("--mathjax", type=Path, help="a local copy of the mathjax@3 npm package (its es5/ inside)")
    args = parser.parse_args(argv)
    mathjax = args.mathjax
    if mathjax is not None and not (mathjax / "es5" / "tex-mml-chtml.js").is_file():
        print(f"browser check: no MathJax copy in {mathjax}; pages load it from its CDN", file=sys.stderr)
        mathjax = None
    started = time.monotonic()
    try:
        reports = check_site(args.site, Repository.from_config(args.config), mathjax, args.repo_root)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        print(f"browser check: {error}", file=sys.stderr)
        return 2
    failed = [report for report in reports if report.problems]
    for report in reports:
        print(f"{'FAIL' if report.problems else 'ok  '} {report.page} ({', '.join(report.checked)})")
        for problem in report.problems:
            print(f"       - {problem}")
    notes = sorted({note for report in reports for note in report.notes})
    if notes:
        print("notes (not failures):")
        for note in notes:
            print(f"       - {note}")
    print(f"browser check: {len(reports)} pages in {time.monotonic() - started:.0f} s, "
          f"{len(failed)} with problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
