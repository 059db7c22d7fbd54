"""Every page of every role (tests/browser/pages.py), audited by axe-core and shown at 375 px.

axe-core comes from the pinned npm package in tests/browser/axe and is injected with
``page.evaluate``, so the pages keep their Content-Security-Policy. Critical and serious
findings fail; moderate and minor ones are reported as warnings and written to
test-artifacts/axe-<backend>.md with the full table.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

from tests.browser.helpers import sign_in
from tests.browser.pages import ACCOUNTS, page_visits
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.browser

AXE_DIR = Path(__file__).parent / "axe"
AXE_SCRIPT = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = {"critical", "serious"}
IMPACT_ORDER = ["critical", "serious", "moderate", "minor"]
NARROW = {"width": 375, "height": 800}
RUN_AXE = """() => axe.run(document, {resultTypes: ['violations']}).then(result => result.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + n.failureSummary.split('\\n').slice(1).join(' ').trim())
})))"""
WIDER_THAN_VIEWPORT = """() => {
  const clipped = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
    if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return true; } return false; };
  return [...document.querySelectorAll('body *')]
    .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1 && el.getClientRects().length && !clipped(el))
    .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\\s+/).join('.') : ''));
}"""


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, installed from package-lock.json on first use."""
    if not AXE_SCRIPT.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is needed to install axe-core for the accessibility test")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=AXE_DIR, check=True, capture_output=True)
    return AXE_SCRIPT.read_text()


@pytest.fixture(scope="module")
def visits(live_server):
    return page_visits(live_server.app)


def signed_in_context(browser, live_server, role: str, viewport: dict):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    if ACCOUNTS[role]:
        sign_in(page, live_server.url, ACCOUNTS[role])
    return context, page


def visit(page, base_url: str, url: str) -> None:
    response = page.goto(base_url + url)
    assert response is not None and response.status < 500, f"{url} answered {response and response.status}"
    page.wait_for_load_state("load")


def table(findings: dict) -> str:
    lines = ["| rule | impact | pages | nodes |", "|---|---|---|---|"]
    for (rule, impact), hits in sorted(findings.items(), key=lambda item: (IMPACT_ORDER.index(item[0][1]),
                                                                            item[0][0])):
        lines.append(f"| {rule} | {impact} | {len(hits)} | {sum(hits.values())} |")
    return "\n".join(lines)


@pytest.mark.parametrize("role", list(ACCOUNTS))
def test_every_page_has_no_serious_accessibility_finding(live_server, browser, visits, axe_source, role, backend):
    context, page = signed_in_context(browser, live_server, role, {"width": 1280, "height": 900})
    findings: dict = defaultdict(dict)
    failures = []
    try:
        for entry in (v for v in visits if v.role == role):
            visit(page, live_server.url, entry.url)
            page.evaluate(axe_source)
            for violation in page.evaluate(RUN_AXE):
                findings[(violation["id"], violation["impact"])][entry.url] = len(violation["nodes"])
                if violation["impact"] in FAILING_IMPACTS:
                    failures.append(f"{entry.url}: {violation['impact']} {violation['id']} ({violation['help']})\n    "
                                    + "\n    ".join(violation["nodes"][:5]))
    finally:
        context.close()
    report = table(findings)
    os.makedirs(ARTIFACTS, exist_ok=True)
    Path(ARTIFACTS, f"axe-{role}-{backend}.md").write_text(report + "\n")
    for (rule, impact), hits in findings.items():
        if impact not in FAILING_IMPACTS:
            warnings.warn(f"axe {impact} {rule} as {role} on {len(hits)} pages: {', '.join(sorted(hits))}",
                          stacklevel=1)
    assert not failures, "critical or serious axe findings:\n" + "\n".join(failures) + "\n\n" + report


@pytest.mark.parametrize("role", list(ACCOUNTS))
def test_every_page_fits_a_375_px_screen(live_server, browser, visits, role):
    context, page = signed_in_context(browser, live_server, role, NARROW)
    too_wide = []
    try:
        for entry in (v for v in visits if v.role == role):
            visit(page, live_server.url, entry.url)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > NARROW["width"]:
                too_wide.append(f"{entry.url}: {width} px, e.g. {page.evaluate(WIDER_THAN_VIEWPORT)}")
    finally:
        context.close()
    assert not too_wide, "pages wider than a 375 px screen:\n" + "\n".join(too_wide)
