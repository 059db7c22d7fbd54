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
from dataclasses import dataclass, field
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
WIDE = {"width": 1280, "height": 900}
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


@dataclass
class RoleWalk:
    """What one walk over a role's pages found: axe's findings and the pages too wide at 375 px."""

    findings: dict = field(default_factory=lambda: defaultdict(dict))
    failures: list[str] = field(default_factory=list)
    too_wide: list[str] = field(default_factory=list)


def signed_in_page(browser, live_server, role: str):
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    if ACCOUNTS[role]:
        sign_in(page, live_server.url, ACCOUNTS[role])
    return context, page


def visit(page, base_url: str, url: str) -> None:
    response = page.goto(base_url + url)
    assert response is not None and response.status < 500, f"{url} answered {response and response.status}"
    page.wait_for_load_state("load")


def walk_pages(browser, live_server, visits, axe_source: str, role: str) -> RoleWalk:
    """Each of ``role``'s pages loaded once, at 375 px; then the window widens to 1280 px for axe.

    A page must be loaded narrow to be measured narrow (the admin's select widgets fix their
    width in pixels as the page loads). Widening it re-applies the style sheet's media queries,
    which is all that changes what axe checks (names, roles, contrast, structure), and saves a
    second load of every page: the admin alone has over a hundred.
    """
    walk = RoleWalk()
    context, page = signed_in_page(browser, live_server, role)
    try:
        for entry in (v for v in visits if v.role == role):
            page.set_viewport_size(NARROW)
            visit(page, live_server.url, entry.url)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > NARROW["width"]:
                walk.too_wide.append(f"{entry.url}: {width} px, e.g. {page.evaluate(WIDER_THAN_VIEWPORT)}")
            page.set_viewport_size(WIDE)
            page.evaluate(axe_source)
            for violation in page.evaluate(RUN_AXE):
                walk.findings[(violation["id"], violation["impact"])][entry.url] = len(violation["nodes"])
                if violation["impact"] in FAILING_IMPACTS:
                    walk.failures.append(f"{entry.url}: {violation['impact']} {violation['id']} "
                                         f"({violation['help']})\n    " + "\n    ".join(violation["nodes"][:5]))
    finally:
        context.close()
    return walk


@pytest.fixture(scope="module")
def walked(live_server, browser, visits, axe_source):
    """``walked(role)``: the one walk over that role's pages, made when a test first asks for it."""
    walks: dict[str, RoleWalk] = {}

    def walk_of(role: str) -> RoleWalk:
        if role not in walks:
            walks[role] = walk_pages(browser, live_server, visits, axe_source, role)
        return walks[role]

    return walk_of


def table(findings: dict) -> str:
    lines = ["| rule | impact | pages | nodes |", "|---|---|---|---|"]
    for (rule, impact), hits in sorted(findings.items(), key=lambda item: (IMPACT_ORDER.index(item[0][1]),
                                                                            item[0][0])):
        lines.append(f"| {rule} | {impact} | {len(hits)} | {sum(hits.values())} |")
    return "\n".join(lines)


@pytest.mark.parametrize("role", list(ACCOUNTS))
def test_every_page_has_no_serious_accessibility_finding(walked, role, backend):
    walk = walked(role)
    report = table(walk.findings)
    os.makedirs(ARTIFACTS, exist_ok=True)
    Path(ARTIFACTS, f"axe-{role}-{backend}.md").write_text(report + "\n")
    for (rule, impact), hits in walk.findings.items():
        if impact not in FAILING_IMPACTS:
            warnings.warn(f"axe {impact} {rule} as {role} on {len(hits)} pages: {', '.join(sorted(hits))}",
                          stacklevel=1)
    assert not walk.failures, "critical or serious axe findings:\n" + "\n".join(walk.failures) + "\n\n" + report


@pytest.mark.parametrize("role", list(ACCOUNTS))
def test_every_page_fits_a_375_px_screen(walked, role):
    assert not walked(role).too_wide, "pages wider than a 375 px screen:\n" + "\n".join(walked(role).too_wide)
