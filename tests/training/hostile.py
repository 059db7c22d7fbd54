"""Hostile walk: the runner API needs a runner's token to reach its views."""
from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_job_runner, make_training_job
from tests.hostile import Fields
from webapp.training.services import runner_worker_name

REPORT = "/api/runner/jobs/<int:job_id>/report"
REPORT_FIELDS = ("status", "progress", "metrics", "events", "error", "output_model_version", "report_id")
CLAIM = "/api/runner/jobs/claim"
HEARTBEAT = "/api/runner/jobs/<int:job_id>/heartbeat"


def bases(world: World) -> list[Route]:
    runner, token = make_job_runner()
    bearer = {"Authorization": f"Bearer {token}"}
    running = make_training_job(world.other, status="running")
    held = make_training_job(world.other, status="running", worker_name=runner_worker_name(runner), attempts=1)
    make_training_job(world.other, status="queued")
    return [
        Route("POST", REPORT, f"/api/runner/jobs/{running.id}/report", same_for_signed_in("ok", "ok"),
              headers=bearer, json={"progress": 0.5}),
        Route("POST", CLAIM, "/api/runner/jobs/claim", same_for_signed_in("ok", "ok"), headers=bearer,
              json={"capabilities": ["internal"]}),
        Route("POST", HEARTBEAT, f"/api/runner/jobs/{held.id}/heartbeat", same_for_signed_in("ok", "ok"),
              headers=bearer),
    ]


def extra_fields(world: World) -> dict[tuple[str, str], Fields]:
    return {("POST", REPORT): Fields(json=REPORT_FIELDS), ("POST", CLAIM): Fields(json=("capabilities",))}
