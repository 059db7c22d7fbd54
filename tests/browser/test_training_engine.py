"""Ada trains a minion from /jobs/new and watches a real Celery worker (on a real broker) run it to
success, then starts another job and cancels it while it runs."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import sign_in
from tests.browser.test_jobs_leaderboard import rank_and_xp
from tests.conftest import LiveServer
from tests.training.broker import broker_app, start_beat, start_together, start_worker, stop_together, wait_until
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.seed.demo import FIRST_JOB_NAME
from webapp.training.models import TrainingJob, TrainingJobEvent

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"
# A cancel reaches the trainer at its next step: within an epoch of this demo data, a few seconds.
CANCEL_REACHES_THE_TRAINER_WITHIN = 30


@pytest.fixture(scope="module")
def engine_server(backend, tmp_path_factory):
    """The demo console on a real port, with a Celery worker and beat on the test broker."""
    from webapp.seed.demo import seed_demo

    tmp_dir = tmp_path_factory.mktemp(f"engine-live-{backend}")
    with broker_app(backend, tmp_dir, "_engine_live", WTF_CSRF_ENABLED=True, SERVER_NAME=None) as app, \
            LiveServer(app) as server:
        app.config["BASE_URL"] = server.url
        with app.app_context():
            seed_demo(app.config["DEMO_PASSWORD"])
        processes = start_together(start_beat(app, tmp_dir, wait=False), start_worker(app, tmp_dir, "alpha", wait=False))
        with app.app_context():
            # The demo's queued job runs first, as on a newcomer's first start.
            wait_until(lambda: db.session.scalars(select(TrainingJob).filter_by(
                name=FIRST_JOB_NAME, status="succeeded")).first(), what="the demo's queued job to succeed")
        yield server
        stop_together(processes)


def minion_id(server, name: str) -> int:
    with server.app.app_context():
        return db.session.scalars(select(Minion.id).filter_by(name=name)).one()


def start_job_from_the_form(page, server, minion: str, epochs: int, batch_size: int = 8) -> int:
    page.goto(f"{server.url}/jobs")
    page.get_by_role("link", name="Start a training job").click()
    expect(page).to_have_url(re.compile(r"/jobs/new$"))
    page.goto(f"{server.url}/jobs/new?minion={minion_id(server, minion)}")
    expect(page.get_by_label("Minion")).to_have_value(str(minion_id(server, minion)))
    expect(page.locator("#preview-key")).to_contain_text("none needed")
    page.get_by_label("Train split").select_option(label="Support intents (train) (yours, jsonl, 480 rows)")
    page.get_by_label("Validation split").select_option(label="Support intents (validation) (yours, jsonl, 120 rows)")
    page.get_by_label("Epochs").fill(str(epochs))
    page.get_by_label("Batch size").fill(str(batch_size))  # small batches: a run long enough to watch
    page.get_by_role("button", name="Start training").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_ada_trains_a_minion_and_watches_it_succeed_then_cancels_another(engine_server, page, backend):
    server = engine_server
    sign_in(page, server.url, "ada@demo.test")
    page.goto(f"{server.url}/leaderboard?q=Byron")
    rank_before, xp_before = rank_and_xp(page, "Byron")

    job_id = start_job_from_the_form(page, server, "Byron", epochs=20)
    page.screenshot(path=f"{SHOTS}/engine-job-new-{backend}.png", full_page=True)
    live = page.locator("#job-live")
    # This run can end between two of the page's 3 s polls on an idle machine, so "running" is
    # watched on the longer second job below; here the page must reach the end on its own polls.
    expect(live.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(live.locator(".job-output")).to_contain_text(f"job-{job_id}")
    expect(live.locator(".job-output")).to_contain_text("models/")
    expect(page.locator("#event-log")).to_contain_text("Epoch 20/20")
    expect(live).not_to_have_attribute("hx-trigger", "every 3s")
    page.screenshot(path=f"{SHOTS}/engine-job-succeeded-{backend}.png", full_page=True)

    page.goto(f"{server.url}/leaderboard?q=Byron")
    rank_after, xp_after = rank_and_xp(page, "Byron")
    assert xp_after == xp_before + 150
    assert rank_after < rank_before or rank_before == 1
    # Byron's page, through the leaderboard's link: his lineage now starts with the version this job made.
    page.locator("#leaderboard a.minion-label", has_text="Byron").first.click()
    expect(page).to_have_url(re.compile(r"/minions/\d+$"))
    newest = page.locator("section[aria-labelledby=minion-lineage-heading] tbody tr").first
    expect(newest.locator(f"a[href='/jobs/{job_id}']")).to_have_count(1)

    page.on("dialog", lambda dialog: dialog.accept())
    # One example per update: a run that outlasts a few of the page's 3 s polls even on an idle machine.
    second = start_job_from_the_form(page, server, "Byron", epochs=50, batch_size=1)
    expect(live.locator("#job-status")).to_have_text("running", timeout=60_000)
    expect(live).to_have_attribute("hx-trigger", "every 3s")
    expect(page.locator("#event-log")).to_contain_text(re.compile(r"Epoch \d+/50"), timeout=60_000)
    page.screenshot(path=f"{SHOTS}/engine-job-running-{backend}.png", full_page=True)
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("canceled")
    with server.app.app_context():
        assert wait_until(lambda: db.session.scalar(select(TrainingJobEvent.id).where(
            TrainingJobEvent.training_job_id == second, TrainingJobEvent.message.like("Stopped on %"))),
            timeout=CANCEL_REACHES_THE_TRAINER_WITHIN, what="the trainer to stop")
        assert db.session.get(TrainingJob, second).output_model_version_id is None
    page.reload()
    expect(page.locator("#event-log li").first).to_contain_text("Stopped on")
    page.screenshot(path=f"{SHOTS}/engine-job-canceled-{backend}.png", full_page=True)
