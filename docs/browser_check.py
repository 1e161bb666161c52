"""Look at the built documentation in a real headless browser (issue 18).

    sphinx-build -W -D plot_gallery=0 docs docs/_build/html
    python docs/browser_check.py docs/_build/html --out docs/_build/screenshots

Opens pages in headless Chromium (Selenium and chromedriver: ``pip install selenium``, and
Debian's ``chromium chromium-driver``), saves a full-page screenshot of each, and fails
(exit status 1) on what a reader would see as broken:

* a table wider than the column it sits in (cut off, or scrolling sideways);
* a code block whose lines run past its right edge;
* TeX left unrendered (``\\(`` or ``\\[`` in the visible text);
* a figure shown at less than half its pixel width and narrower than 600 px (unreadable);
* a broken image.

The build does not need the network, but MathJax comes from a CDN: offline, pass a local
copy, e.g. ``npm install mathjax@3`` and ``sphinx-build ... -D
mathjax_path=file://$PWD/node_modules/mathjax/es5/tex-mml-chtml.js``; without one the math
check reports every page with math.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

PAGES = (
    "index",
    "getting_started",
    "guide_basics",
    "guide_samplers",
    "guide_weights",
    "guide_practice",
    "guide_state",
    "real_posteriors",
    "scaling_out",
    "benchmarks",
    "api",
    "generated/skcds.SelfConsistentSampler",
    "auto_examples/index",
)
WIDTH = 1280

# one pass over the page in the browser: what a reader would see as broken
_FINDINGS = """
const found = [];
const article = document.querySelector('.bd-article') || document.body;
for (const table of article.querySelectorAll('table')) {
  const parent = table.parentElement.getBoundingClientRect().width;
  const wide = table.getBoundingClientRect().width > parent + 1;
  if (table.scrollWidth > table.clientWidth + 1 || wide) {
    const cap = table.querySelector('caption');
    const name = cap ? cap.innerText : table.innerText.slice(0, 60);
    found.push('table wider than its column: ' + name);
  }
}
for (const pre of article.querySelectorAll('pre')) {
  if (pre.scrollWidth > pre.clientWidth + 1) {
    found.push('code cut off at the right: ' + pre.innerText.split('\\n')[0].slice(0, 60));
  }
}
const text = article.innerText;
for (const mark of ['\\\\(', '\\\\[']) {
  if (text.includes(mark)) { found.push('unrendered TeX (' + mark + ')'); break; }
}
for (const img of article.querySelectorAll('img')) {
  if (img.closest('.sphx-glr-thumbcontainer')) continue;  // gallery thumbnails are small
  if (!img.complete || img.naturalWidth === 0) { found.push('broken image: ' + img.src); continue; }
  const shown = img.getBoundingClientRect().width;
  if (shown < 600 && shown < 0.5 * img.naturalWidth) {
    const name = img.src.split('/').pop();
    found.push(`figure shown at ${Math.round(shown)} of ${img.naturalWidth} px: ${name}`);
  }
}
return found;
"""


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # an installed chromedriver, so that Selenium does not try to download one
    service = Service(shutil.which("chromedriver")) if shutil.which("chromedriver") else None
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WIDTH},1000")
    return webdriver.Chrome(options=options, service=service)


def check(html: Path, out: Path, pages=PAGES) -> dict[str, list[str]]:
    """Screenshot each page into ``out`` and return the findings per page."""
    out.mkdir(parents=True, exist_ok=True)
    driver = _browser()
    findings = {}
    try:
        for page in pages:
            driver.get((html / f"{page}.html").resolve().as_uri())
            time.sleep(1.5)  # MathJax typesets after load
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(WIDTH, min(int(height), 16000))
            time.sleep(0.5)
            findings[page] = driver.execute_script(_FINDINGS)
            driver.save_screenshot(str(out / f"{page.replace('/', '_')}.png"))
    finally:
        driver.quit()
    return findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html", type=Path, help="the built site (sphinx-build's output)")
    parser.add_argument("--out", type=Path, default=Path("docs/_build/screenshots"))
    parser.add_argument("--pages", nargs="*", default=list(PAGES))
    args = parser.parse_args()
    findings = check(args.html, args.out, args.pages)
    for page, found in findings.items():
        print(f"{page}: {'ok' if not found else ''}")
        for item in found:
            print(f"  - {item}")
    print(f"screenshots: {args.out}")
    return 1 if any(findings.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
