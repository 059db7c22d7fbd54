"""minion-console: the newcomer's one command.

Builds or upgrades the schema through the migrations, loads the demo data on
first start, prints the demo sign-ins, starts a Celery worker with beat beside
the web server (on the embedded broker unless CELERY_BROKER_URL names one; off
with EMBEDDED_WORKER=0), and serves the console.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys

from flask_migrate import upgrade
from sqlalchemy import func, select
from werkzeug.serving import run_simple

from webapp import create_app
from webapp.config import instance_secret
from webapp.extensions import db

DEMO_ACCOUNTS = [
    ("admin@demo.test", "admin: every permission, the admin at /admin"),
    ("support@demo.test", "support: the support console"),
    ("ada@demo.test", "user"),
    ("grace@demo.test", "user"),
]


def demo_password(app) -> str:
    """DEMO_PASSWORD when set, else one generated on first start and kept in the instance folder."""
    return app.config.get("DEMO_PASSWORD") or instance_secret(
        app.instance_path, "demo_password", lambda: secrets.token_urlsafe(12)
    )


def prepare(app) -> str:
    from webapp.accounts.models import User
    from webapp.seed.demo import seed_demo

    password = demo_password(app)
    with app.app_context():
        upgrade()
        if not db.session.scalar(select(func.count()).select_from(User)):
            print("First start: loading demo data ...")
            seed_demo(password)
    return password


def start_worker(app) -> subprocess.Popen:
    """``celery -A webapp.worker worker -B`` in its own process group: it runs the jobs and the periodic work."""
    command = [sys.executable, "-m", "celery", "-A", "webapp.worker", "worker", "--beat",
               "--schedule", os.path.join(app.instance_path, "celerybeat-schedule"),
               "--concurrency", "2", "--loglevel", os.environ.get("WORKER_LOG_LEVEL", "WARNING"),
               "--without-mingle", "--without-gossip"]
    return subprocess.Popen(command, start_new_session=True,
                            env={**os.environ, "INSTANCE_PATH": app.instance_path})


def stop_worker(worker: subprocess.Popen) -> None:
    """Warm shutdown (a running job is finished or, if it takes too long, found by the sweeper next time)."""
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
MAIL_HELP = """\
Mail (password resets, email confirmations) is kept in the outbox that admins read
at /admin/mail_outbox/ and printed here; set MAIL_BACKEND=smtp and SMTP_HOST to send it.
Links in mail point to BASE_URL, which follows --host and --port unless it is set.
Configuration comes from environment variables: see the README."""


def base_url_for(host: str, port: int) -> str:
    """The address links in mail should use when BASE_URL is not set: where this server listens."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="minion-console", description=__doc__, epilog=MAIL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                        help="address to listen on (default: %(default)s, or HOST); 0.0.0.0 listens on "
                             "every interface, then set BASE_URL and TRUSTED_HOSTS to the name others use")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")),
                        help="port to listen on (default: %(default)s, or PORT); pick a free one when "
                             "5000 is taken, e.g. --port 5101")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("BASE_URL", base_url_for(args.host, args.port))
    app = create_app()
    password = prepare(app)
    print(f"\nMinion Console: {app.config['BASE_URL']}  "
          f"(database: {app.config['SQLALCHEMY_DATABASE_URI'].split('://')[0]}, mail: {app.config['MAIL_BACKEND']})")
    print("Demo sign-ins, all with the password:", password)
    for email, what in DEMO_ACCOUNTS:
        print(f"  {email:<20} {what}")
    # A plain SIGTERM (a service manager, ``timeout``) ends the server through the finally below, worker included.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    worker = start_worker(app) if app.config["EMBEDDED_WORKER"] else None
    if worker:
        print("A Celery worker and beat run beside the server: queued training jobs start within seconds.")
    if app.config["MAIL_BACKEND"] == "outbox":
        print(f"Mail is printed here and kept at {app.config['BASE_URL']}/admin/mail_outbox/")
    print()
    try:
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    finally:
        if worker:
            stop_worker(worker)


if __name__ == "__main__":
    main()
