"""An admin creates a plan and edits a user through Flask-Admin's forms, then finds both in the audit trail;
the admin's pages link to each other like the console's."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.browser.helpers import sign_in
from webapp.extensions import db
from webapp.training.models import TrainingJob

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"


def test_admin_creates_a_plan_edits_a_user_and_finds_both_in_the_audit_trail(live_server, page, backend):
    csp_errors = []
    page.on("console", lambda message: csp_errors.append((page.url, message.text[:200]))
            if "Content Security Policy" in message.text else None)
    sign_in(page, live_server.url, "admin@demo.test")

    page.goto(f"{live_server.url}/admin/")
    expect(page.get_by_text("New users this week")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/admin-home-{backend}.png", full_page=True)

    page.goto(f"{live_server.url}/admin/plans/new/")
    page.get_by_label("Code").fill("starter")
    page.get_by_label("Name").fill("Starter")
    page.get_by_label("Price Cents").fill("900")
    page.get_by_label("Tokens: limit per period").fill("250000")
    page.get_by_label("Other quotas").fill('{"minions": 1}')
    page.get_by_label("Features").fill('["1 minion"]')
    page.locator("input[type=submit][value=Save]").click()
    expect(page.get_by_text("Record was successfully created.")).to_be_visible()
    expect(page.locator("table.model-list")).to_contain_text("Starter")
    page.screenshot(path=f"{SHOTS}/admin-plans-{backend}.png", full_page=True)

    page.goto(f"{live_server.url}/admin/users/?search=grace")
    page.locator("a[title='Edit Record']").first.click()
    page.get_by_label("Display Name").fill("Grace B. Hopper")
    page.screenshot(path=f"{SHOTS}/admin-user-edit-{backend}.png", full_page=True)
    page.locator("input[type=submit][value=Save]").click()
    expect(page.get_by_text("Record was successfully saved.")).to_be_visible()
    expect(page.locator("table.model-list")).to_contain_text("Grace B. Hopper")

    page.goto(f"{live_server.url}/admin/audit_events/")
    trail = page.locator("table.model-list")
    expect(trail).to_contain_text("admin.create")
    expect(trail).to_contain_text('"code": [null, "starter"]')
    expect(trail).to_contain_text("admin.update")
    expect(trail).to_contain_text('"display_name": ["Grace Hopper", "Grace B. Hopper"]')
    expect(trail).not_to_contain_text("email_verified_at")
    page.screenshot(path=f"{SHOTS}/admin-audit-{backend}.png", full_page=True)

    page.get_by_role("link", name="Add Filter").click()
    page.screenshot(path=f"{SHOTS}/admin-audit-filters-{backend}.png", full_page=True)
    assert csp_errors == []


def test_admin_pages_link_like_the_console(live_server, page, backend):
    """Home cards lead to the filtered list, recent actions to their record, a user's details to what they own."""
    sign_in(page, live_server.url, "admin@demo.test")
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Admin", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Home")).to_be_visible()
    expect(page.get_by_role("link", name="Revenue this month")).to_contain_text("$")

    page.get_by_role("link", name="Jobs failed").click()
    expect(page).to_have_url(re.compile(r"/admin/training_jobs/\?flt0_status_equals=failed"))
    rows = page.locator("table.model-list tbody tr")
    with live_server.app.app_context():
        failed = db.session.scalar(select(func.count(TrainingJob.id)).where(TrainingJob.status == "failed"))
    assert failed > 0, "the demo data has failed jobs to list"
    expect(rows).to_have_count(failed)
    expect(rows.first).to_contain_text("failed")
    expect(rows.first).to_contain_text("%")

    page.goto(f"{live_server.url}/admin/")
    recent = page.locator(".recent-actions")
    recent.get_by_role("link", name="user subscriptions #").first.click()
    expect(page).to_have_url(re.compile(r"/admin/user_subscriptions/details/\?id=\d+"))
    # A foreign key is a link to the related record, not its name as plain text.
    page.locator("table.searchable").get_by_role("link", name="Ada Lovelace").click()
    expect(page).to_have_url(re.compile(r"/admin/users/details/\?id=\d+"))
    expect(page.get_by_role("heading", name="Minions")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/admin-user-details-{backend}.png", full_page=True)
    page.get_by_role("heading", name="Training jobs").locator("xpath=..").get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(r"/admin/training_jobs/details/\?id=\d+"))
    expect(page.locator("table.searchable")).not_to_contain_text(re.compile(r":\d\d\.\d{6}"))  # no microseconds

    page.goto(f"{live_server.url}/admin/users/")
    page.locator("table.model-list tbody tr").first.locator("a[title='Edit Record']").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    # The history is fetched after the page: once it is in, the link that stands in for it is gone.
    expect(page.get_by_role("link", name="Show the history")).to_have_count(0)
    page.goto(f"{live_server.url}/admin/minions/")
    expect(page.get_by_role("link", name="Export")).to_have_attribute("href", re.compile(r"/admin/minions/export/csv/"))
