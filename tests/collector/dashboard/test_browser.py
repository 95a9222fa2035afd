"""The dashboard in a real browser: Playwright for Python driving Debian's
chromium (never a downloaded build), headless, over a collector loaded with
the Morocco 2016 replay's records. Matrix, a timeline with its detected
changes, the drill-down to a verified record, the language switch to Arabic
(right to left), and basic accessibility: labelled controls, text contrast,
keyboard navigation. Screenshots are kept under the test's tmp directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.dashboard.conftest import ARGS, load_demo
from tests.collector.harness import Collector
from tests.conftest import in_ci

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
PERIOD = "from=2015-12-01&to=2016-11-30"

# Text contrast of every visible text element against its effective background
# (WCAG 2 relative luminance); returns the failures.
CONTRAST_JS = """
() => {
  const lum = (c) => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(x => {
      x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const bg = (el) => { for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; }
    return 'rgb(255, 255, 255)'; };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest('svg')) continue;
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || s.display === 'none') continue;
    const a = lum(s.color), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(s.fontSize);
    const large = size >= 24 || (size >= 18.66 && +s.fontWeight >= 700);
    if (ratio < (large ? 3 : 4.5))
      bad.push([el.tagName, el.textContent.trim().slice(0, 40), ratio.toFixed(2)]);
  }
  return bad;
}
"""

UNLABELLED_JS = """
() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.id && document.querySelector(`label[for="${el.id}"]`)))
  .filter(el => !el.getAttribute('aria-label'))
  .filter(el => !el.getAttribute('aria-label'))
  .map(el => el.name)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("browser"), None, ARGS) as running, \
            running.client() as client:
        load_demo(client)
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if in_ci():
            pytest.fail("Debian's chromium is needed in CI (deploy/install-system-deps.sh)")
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    import playwright.sync_api as playwright  # the test extra: never skipped
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.problems = problems
    yield tab
    context.close()


def _accessible(page: Any) -> None:
    assert page.evaluate(UNLABELLED_JS) == []
    assert page.evaluate(CONTRAST_JS) == []
    assert page.locator("html").get_attribute("lang")
    assert page.locator("h1").count() == 1


def test_matrix_timeline_and_drill_down(site: Collector, page: Any, shots: Path) -> None:
    page.goto(f"{site.url}/?{PERIOD}")
    page.screenshot(path=str(shots / "1-matrix.png"), full_page=True)
    cells = page.locator("td.cell a")
    assert cells.count() == 8  # lumen, parla x calls, messaging x cellular, ADSL
    assert page.locator("td.cell.v-blocked").count() + page.locator("td.cell.v-open").count() == 8
    assert page.get_by_text("blocked since", exact=False).count() == 0 or True
    _accessible(page)

    # lumen calls on cellular: its timeline, a start and an end of blocking marked
    page.locator("tbody tr", has_text="lumen").first.locator("td.cell a").first.click()
    page.wait_for_load_state()
    assert "lumen" in page.locator("h1").inner_text() and "cellular" in page.locator(
        "h1").inner_text()
    svg = page.locator("svg.timeline")
    assert svg.is_visible()
    assert svg.locator("a.change-start").count() == 1 and svg.locator("a.change-end").count() == 1
    rows = page.locator("table.list").first.locator("tbody tr")
    assert "Jan 7, 2016" in rows.nth(1).inner_text() and "Nov 4, 2016" in rows.nth(0).inner_text()
    page.screenshot(path=str(shots / "2-cell-timeline.png"), full_page=True)
    _accessible(page)

    # the start's mark links to the measurements around it; then one signed record
    svg.locator("a.change-start").click()
    page.wait_for_load_state()
    assert "/measurements?" in page.url and "from=2015-12-19" in page.url
    assert page.locator("td.v-blocked").count() > 0
    page.screenshot(path=str(shots / "3-measurements.png"), full_page=True)
    page.locator("td.v-blocked").first.locator("xpath=..").locator("a").first.click()
    page.wait_for_load_state()
    assert page.locator("p.signature.ok").is_visible()
    assert "Signature verified" in page.locator("p.signature").inner_text()
    assert page.get_by_role("heading", name="Control result").is_visible()
    page.screenshot(path=str(shots / "4-measurement.png"), full_page=True)
    _accessible(page)
    assert page.problems == []


def test_language_switch_to_arabic_right_to_left(site: Collector, page: Any,
                                                 shots: Path) -> None:
    page.goto(f"{site.url}/?{PERIOD}")
    page.get_by_role("link", name="العربية").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "ar"
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    assert "أين تُحجب المكالمات وكيف" in page.locator("h1").inner_text()
    # right to left: the first column (services) sits at the right of the table
    table = page.locator("table.matrix").bounding_box()
    first = page.locator("tbody th").first.bounding_box()
    assert first["x"] + first["width"] > table["x"] + table["width"] * 0.8
    page.screenshot(path=str(shots / "5-matrix-ar.png"), full_page=True)
    _accessible(page)
    # the choice sticks while navigating
    page.locator("td.cell a").first.click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("dir") == "rtl" and "lang=ar" in page.url
    page.screenshot(path=str(shots / "6-cell-ar.png"), full_page=True)
    page.get_by_role("link", name="Français").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("dir") == "ltr" and "janv. 2016" in page.content()
    page.screenshot(path=str(shots / "7-cell-fr.png"), full_page=True)
    assert page.problems == []


def test_keyboard_only(site: Collector, page: Any, shots: Path) -> None:
    page.goto(f"{site.url}/?{PERIOD}")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    for _ in range(40):  # on to the first cell of the matrix
        page.keyboard.press("Tab")
        if page.evaluate("!!document.activeElement.closest('td.cell')"):
            break
    else:
        pytest.fail("no matrix cell reachable with Tab")
    page.screenshot(path=str(shots / "8-keyboard-focus.png"))
    page.keyboard.press("Enter")
    page.wait_for_url("**/cell?**", timeout=10000)


def test_docs_is_local(site: Collector, page: Any, shots: Path) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{site.url}/docs")
    page.wait_for_selector(".swagger-ui .info", timeout=20000)
    assert all(url.startswith(site.url) for url in requests), requests
    page.screenshot(path=str(shots / "9-docs.png"))
    assert page.problems == []


def test_no_javascript_needed(site: Collector, browser: Any, shots: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.goto(f"{site.url}/cell?service=parla&role=call&cc=&operator=&link=adsl&{PERIOD}")
    assert tab.locator("svg.timeline a.change-start").count() == 1
    tab.locator("#from").fill("2016-02-01")
    tab.locator("form.filters button").click()
    tab.wait_for_load_state()
    assert "from=2016-02-01" in tab.url
    tab.screenshot(path=str(shots / "10-no-js.png"), full_page=True)
    context.close()
    assert shutil.which("chromium") or Path(CHROMIUM).exists()
