"""The console's Celery app with one trivial task, for the harness's dispatch measurement.

    celery -A bench.celery_noop worker

The task only counts itself done in Redis (the broker), so the harness sees completions while the
console's settings (late acknowledgement, one message at a time, tasks in an app context) apply.
"""
import redis

from webapp.worker import celery, flask_app

DONE = "bench:noop:done"
counter = redis.Redis.from_url(flask_app.config["CELERY_BROKER_URL"])


@celery.task(name="bench.noop")
def noop() -> None:
    counter.incr(DONE)
