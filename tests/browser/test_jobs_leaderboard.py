"""Ada watches a running job report progress and succeed, finds her minion higher on the
leaderboard, cancels and retries a job from its page, and reloads a filtered leaderboard."""
import json
import re
import urllib.request
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import sign_in
from tests.factories import make_training_job
from webapp.accounts.models import User
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.providers.models import AIModel, Provider
from webapp.training.models import TrainingJob
from webapp.training.services import create_runner

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"


@pytest.fixture(scope="module")
def runner_token(live_server):
    with live_server.app.app_context():
        _, token = create_runner("browser-test-runner")
        db.session.commit()
    return token


def ada_job(live_server, minion: str, status: str, progress: float = 0.0) -> tuple[int, str]:
    """A job of Ada's for ``minion`` as a third-party runner holds it (the demo's jobs are history)."""
    with live_server.app.app_context():
        ada = db.session.scalars(select(User).filter_by(email="ada@demo.test")).one()
        owned = db.session.scalars(select(Minion).filter_by(owner_user_id=ada.id, name=minion)).one()
        job = make_training_job(ada, status=status, minion=owned, progress=progress, name=f"{minion} browser run")
        db.session.commit()
        return job.id, minion


def report(live_server, token: str, job_id: int, body: dict) -> dict:
    request = urllib.request.Request(
        f"{live_server.url}/api/runner/jobs/{job_id}/report", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def board_row(page, minion: str):
    return page.locator("#leaderboard tbody tr", has=page.locator(".minion-label", has_text=re.compile(f"^{minion}$")))


def rank_and_xp(page, minion: str) -> tuple[int, int]:
    row = board_row(page, minion)
    expect(row).to_have_count(1)
    rank = int(row.locator("td.rank").inner_text().lstrip("#"))
    xp = int(row.locator("td.number").first.inner_text().replace(",", ""))
    return rank, xp


def test_a_running_job_reports_progress_succeeds_and_lifts_the_minion(live_server, page, runner_token, backend):
    job_id, minion = ada_job(live_server, "Cog", "running", progress=0.4)
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/leaderboard?q={minion}")
    rank_before, xp_before = rank_and_xp(page, minion)

    page.goto(f"{live_server.url}/jobs")
    row = page.locator(f"#job-{job_id}")
    expect(row).to_have_attribute("hx-trigger", "every 3s")
    page.screenshot(path=f"{SHOTS}/jobs-list-{backend}.png", full_page=True)

    page.goto(f"{live_server.url}/jobs/{job_id}")
    live = page.locator("#job-live")
    expect(live.locator(".progress-value")).to_have_text("40%")
    report(live_server, runner_token, job_id, {
        "progress": 0.7, "metrics": {"loss": 0.9},
        "events": [{"message": "Step 840 of 1200", "progress": 0.7, "metrics": {"loss": 0.9, "eval_loss": 1.0}}],
    })
    expect(live.locator(".progress-value")).to_have_text("70%", timeout=8_000)
    expect(page.locator("#event-log li").first).to_contain_text("Step 840 of 1200")
    page.screenshot(path=f"{SHOTS}/job-running-{backend}.png", full_page=True)

    result = report(live_server, runner_token, job_id, {
        "status": "succeeded", "events": [{"message": "Finished; model version registered", "progress": 1}],
        "output_model_version": {"version": "browser-v1", "artifact_uri": "s3://minion-models/browser-v1"},
    })
    assert result["status"] == "succeeded"
    expect(live.locator("#job-status")).to_have_text("succeeded", timeout=8_000)
    expect(live.locator(".job-output")).to_contain_text("browser-v1")
    expect(page.locator("#event-log li").first).to_contain_text("Finished; model version registered")
    expect(live).not_to_have_attribute("hx-trigger", "every 3s")
    page.screenshot(path=f"{SHOTS}/job-succeeded-{backend}.png", full_page=True)

    assert "note" in report(live_server, runner_token, job_id, {"status": "succeeded"})
    page.goto(f"{live_server.url}/leaderboard?q={minion}")
    rank_after, xp_after = rank_and_xp(page, minion)
    assert xp_after == xp_before + 150
    assert rank_after < rank_before or rank_before == 1
    page.goto(f"{live_server.url}/leaderboard")
    expect(page.locator("#my-rank")).to_contain_text("Your best minion")
    page.screenshot(path=f"{SHOTS}/leaderboard-{backend}.png", full_page=True)


def test_cancel_and_retry_from_the_job_page(live_server, page, backend):
    job_id, _ = ada_job(live_server, "Quill", "queued")
    sign_in(page, live_server.url, "ada@demo.test")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server.url}/jobs/{job_id}")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("canceled")
    expect(page.get_by_text(f"Job #{job_id} was canceled.")).to_be_visible()

    page.get_by_role("button", name="Retry job").click()
    expect(page).not_to_have_url(re.compile(rf"/jobs/{job_id}$"))
    expect(page.locator("#job-status")).to_have_text("queued")
    expect(page.get_by_text("was queued again as job #")).to_be_visible()
    expect(page.get_by_role("link", name=f"job #{job_id}")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/job-retried-{backend}.png", full_page=True)

    page.goto(f"{live_server.url}/jobs/{job_id}")
    expect(page.get_by_role("link", name=re.compile(r"Retried as job #"))).to_be_visible()
    with live_server.app.app_context():
        assert len(db.session.scalars(select(TrainingJob).filter_by(retry_of_id=job_id)).all()) == 1


def board_minion_ids(page) -> list[int]:
    return [int(row_id.removeprefix("minion-")) for row_id in
            page.locator("#leaderboard tbody tr[id^=minion-]").evaluate_all("rows => rows.map(row => row.id)")]


def matches_filter(live_server, minion_ids: list[int]) -> dict[int, bool]:
    """Whether each minion has an "o" in its name and runs on an OpenAI model, read from the database."""
    with live_server.app.app_context():
        rows = db.session.execute(
            select(Minion.id, Minion.name, Provider.name)
            .join(AIModel, AIModel.id == Minion.model_id).join(Provider, Provider.id == AIModel.provider_id)
            .where(Minion.id.in_(minion_ids))
        ).all()
    return {minion_id: "o" in name.lower() and provider == "OpenAI" for minion_id, name, provider in rows}


def test_leaderboard_filters_narrow_the_board_and_survive_a_reload(live_server, page, backend):
    sign_in(page, live_server.url, "grace@demo.test")
    page.goto(f"{live_server.url}/leaderboard?window=all")
    unfiltered = board_minion_ids(page)
    assert not all(matches_filter(live_server, unfiltered).values()), "the demo board has rows the filter drops"

    # All time: the demo's week and month boards depend on today's date (nearly empty on the 1st).
    page.goto(f"{live_server.url}/leaderboard?window=week")
    page.get_by_label("Window").select_option("all")
    expect(page).to_have_url(re.compile(r"window=all"))
    page.get_by_label("Provider").select_option(label="OpenAI")
    expect(page).to_have_url(re.compile(r"provider=\d+"))
    page.get_by_label("Minion name").fill("o")
    expect(page).to_have_url(re.compile(r"q=o"))
    expect(page.locator("#leaderboard tbody tr[id^=minion-]").first).to_be_visible()
    shown = board_minion_ids(page)
    assert shown and set(shown) < set(unfiltered), "the filters narrowed the board to some of its rows"
    assert all(matches_filter(live_server, shown).values()) and len(matches_filter(live_server, shown)) == len(shown)
    texts = page.locator("#leaderboard tbody tr").all_inner_texts()

    page.reload()
    expect(page.get_by_label("Window")).to_have_value("all")
    expect(page.get_by_label("Provider").locator("option:checked")).to_have_text("OpenAI")
    expect(page.get_by_label("Minion name")).to_have_value("o")
    assert board_minion_ids(page) == shown
    assert page.locator("#leaderboard tbody tr").all_inner_texts() == texts
    page.screenshot(path=f"{SHOTS}/leaderboard-filtered-{backend}.png", full_page=True)


def test_rows_added_by_load_more_survive_the_refresh(live_server, page, backend):
    sign_in(page, live_server.url, "grace@demo.test")
    page.set_viewport_size({"width": 1000, "height": 500})
    page.goto(f"{live_server.url}/leaderboard?per_page=4")
    rows = page.locator("#leaderboard tbody tr[id^=minion-]")
    page.locator("#leaderboard-more").scroll_into_view_if_needed()
    # The reveal fires its request a moment after the scroll; networkidle alone can come first on a busy machine.
    expect(rows).not_to_have_count(4)
    page.wait_for_load_state("networkidle")
    shown = rows.all_inner_texts()
    assert len(shown) > 4
    loaded_pages = -(-len(shown) // 4)
    expect(page.locator("#leaderboard-poll")).to_have_attribute("hx-get", re.compile(f"through={loaded_pages}"))
    # What the 30 s poll does, without waiting 30 s; rows counted right after the swap,
    # before a revealed "load more" could add any back.
    refreshed = page.evaluate("""async () => {
        const poll = document.getElementById('leaderboard-poll');
        await htmx.ajax('GET', poll.getAttribute('hx-get'), {target: '#leaderboard', swap: 'outerHTML'});
        return [...document.querySelectorAll('#leaderboard tbody tr[id^=minion-]')].map(row => row.innerText);
    }""")
    assert refreshed == shown


def test_a_poll_that_finds_nothing_new_is_a_304_and_leaves_the_row_as_it_was(live_server, page, backend, caplog):
    """The browser keeps the row, asks with its ETag, gets a 304 and hands htmx the kept row back (as a 200)."""
    job_id, minion = ada_job(live_server, "Cog", "running", progress=0.25)
    with live_server.app.app_context():
        job = db.session.get(TrainingJob, job_id)
        job.started_at = job.started_at - timedelta(days=2)  # a duration ("2 d 0 h") that holds for an hour
        db.session.commit()
    sign_in(page, live_server.url, "ada@demo.test")
    caplog.set_level("INFO", logger="werkzeug")
    page.goto(f"{live_server.url}/jobs")
    row = page.locator(f"#job-{job_id}")
    page.wait_for_timeout(7_500)  # two polls: the first fills the browser's cache, the second finds nothing new
    answers = [record.getMessage() for record in caplog.records if f"/jobs/{job_id}/row " in record.getMessage()]
    assert any(" 304 " in answer or answer.endswith(" 304 -") for answer in answers), answers
    expect(row).to_have_attribute("hx-trigger", "every 3s")
    expect(row.locator(".progress-value")).to_have_text("25%")
    expect(row.locator(".badge")).to_have_text("running")
    expect(page.locator(f"#job-{job_id}")).to_have_count(1)

    with live_server.app.app_context():
        job = db.session.get(TrainingJob, job_id)
        job.status, job.progress, job.finished_at = "succeeded", 1.0, job.started_at + timedelta(hours=1)
        db.session.commit()
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=8_000)
    expect(row).not_to_have_attribute("hx-trigger", "every 3s")
