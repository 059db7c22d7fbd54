"""Hostile walk: the runner API needs a runner's token to reach its view."""
from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_job_runner, make_training_job
from tests.hostile import Fields

REPORT = "/api/runner/jobs/<int:job_id>/report"
REPORT_FIELDS = ("status", "progress", "metrics", "events", "error", "output_model_version", "report_id")


def bases(world: World) -> list[Route]:
    _, token = make_job_runner()
    running = make_training_job(world.other, status="running")
    return [Route("POST", REPORT, f"/api/runner/jobs/{running.id}/report", same_for_signed_in("ok", "ok"),
                  headers={"Authorization": f"Bearer {token}"}, json={"progress": 0.5})]


def extra_fields(world: World) -> dict[tuple[str, str], Fields]:
    return {("POST", REPORT): Fields(json=REPORT_FIELDS)}
