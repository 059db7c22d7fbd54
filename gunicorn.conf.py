"""gunicorn settings for serving ``app:app`` in production: ``gunicorn -c gunicorn.conf.py app:app``.

Read from the same environment as the app. The worker timeout stays above the database's
answer timeout, so a stalled database is answered with a 503 by the app and the worker lives
on, instead of gunicorn killing the worker mid-request.
"""
import math
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
_answer_timeout = float(os.environ.get("DATABASE_ANSWER_TIMEOUT_SECONDS", "5"))
_statement_timeout = int(os.environ.get("DATABASE_STATEMENT_TIMEOUT_MS", "4000")) / 1000
timeout = int(os.environ.get("GUNICORN_TIMEOUT", max(30, math.ceil(max(_answer_timeout, _statement_timeout)) + 10)))
graceful_timeout = timeout
accesslog = "-"


def on_starting(server):
    # The app warns when per-process rate-limit counters (memory://) are split over several workers;
    # this tells it the final worker count, whether it came from here or from -w.
    os.environ["WEB_CONCURRENCY"] = str(server.cfg.workers)
    if server.cfg.timeout <= max(_answer_timeout, _statement_timeout):
        server.log.warning(
            "gunicorn timeout %ss is not above the database timeouts (%ss): stalled requests will kill workers",
            server.cfg.timeout, max(_answer_timeout, _statement_timeout),
        )
