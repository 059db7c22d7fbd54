"""Authorization matrix rows for the job pages and the runner API."""
from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_minion, make_training_job

# Another user's job: plain users and support (no jobs.read_all / jobs.manage) get 404, admin may.
NOT_THEIRS = {"anonymous": "login", "user": 404, "support": 404, "admin": "ok"}


def routes(world: World) -> list[Route]:
    running = make_training_job(world.other, status="running")
    failed = make_training_job(world.other, status="failed")
    minion = make_minion(world.other)
    return [
        # The playground answers the owner only: anyone else, staff included, gets a 404.
        Route("POST", "/minions/<int:minion_id>/playground", f"/minions/{minion.id}/playground",
              same_for_signed_in("login", 404), data={"prompt": "Hello"}),
        Route("GET", "/jobs", "/jobs", same_for_signed_in("login", "ok")),
        # Staff only (jobs.read_all): the workers and queues page.
        Route("GET", "/jobs/workers", "/jobs/workers", {"anonymous": "login", "user": 403, "support": 403, "admin": "ok"}),
        Route("GET", "/jobs/new", "/jobs/new", same_for_signed_in("login", "ok")),
        # An empty form: every signed-in role gets it back with its errors, nothing is created.
        Route("POST", "/jobs/new", "/jobs/new", same_for_signed_in("login", 422), data={}),
        Route("GET", "/jobs/<int:job_id>", f"/jobs/{running.id}", NOT_THEIRS),
        Route("GET", "/jobs/<int:job_id>/row", f"/jobs/{running.id}/row", NOT_THEIRS),
        Route("POST", "/jobs/<int:job_id>/cancel", f"/jobs/{running.id}/cancel", NOT_THEIRS),
        Route("POST", "/jobs/<int:job_id>/retry", f"/jobs/{failed.id}/retry", NOT_THEIRS),
        # The runner API knows no sessions: without a runner token everyone gets 401.
        Route("POST", "/api/runner/jobs/<int:job_id>/report", f"/api/runner/jobs/{running.id}/report",
              same_for_signed_in(401, 401), json={"progress": 0.5}),
        Route("POST", "/api/runner/jobs/claim", "/api/runner/jobs/claim",
              same_for_signed_in(401, 401), json={"capabilities": ["internal"]}),
        Route("POST", "/api/runner/jobs/<int:job_id>/heartbeat", f"/api/runner/jobs/{running.id}/heartbeat",
              same_for_signed_in(401, 401), json={}),
    ]
