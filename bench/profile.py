"""Where the time of one page goes: a profile of repeated requests, by layer and by function.

    python -m bench.profile /account/subscription            # as ada, 500 requests
    python -m bench.profile /jobs/1/row --htmx --conditional  # a 304 poll (If-None-Match)
    python -m bench.profile /leaderboard --database bench_full --requests 200

It serves the console in this process (bench.wsgi's app, through Werkzeug's test client, so
no socket and no gunicorn) over a PostgreSQL database: by default a fresh one with the demo
data, or ``--database`` (such as the 100% database `python -m bench.run --reuse` keeps). It
signs in through the form, requests the page once to warm up, then ``--requests`` times under
cProfile. Each function's own time is charged to the layer its module belongs to: the
database driver, SQLAlchemy, Jinja2 templates, Flask and Werkzeug, the other extensions,
our code (webapp), the standard library. Timings vary with the machine; the shares much less.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import subprocess
import sys
import time
from collections import defaultdict

from bench.run import PASSWORD, ROLE_EMAILS, database_env, psql

# Module path fragment -> layer, first match wins.
LAYERS = [
    ("psycopg", "database driver (psycopg)"),
    ("sqlalchemy", "SQLAlchemy"),
    ("jinja2", "Jinja2 templates"),
    ("<template>", "Jinja2 templates"),
    ("markupsafe", "Jinja2 templates"),
    ("flask_login", "Flask-Login, Flask-WTF, Flask-Admin"),
    ("flask_wtf", "Flask-Login, Flask-WTF, Flask-Admin"),
    ("wtforms", "Flask-Login, Flask-WTF, Flask-Admin"),
    ("flask_admin", "Flask-Login, Flask-WTF, Flask-Admin"),
    ("werkzeug", "Flask and Werkzeug"),
    ("flask", "Flask and Werkzeug"),
    ("itsdangerous", "Flask and Werkzeug"),
    ("/webapp/", "our code (webapp)"),
    ("/tests/", "our code (webapp)"),
]


def layer_of(filename: str) -> str:
    for fragment, layer in LAYERS:
        if fragment in filename:
            return layer
    if filename.startswith("~") or "/lib/python3" in filename:
        return "Python standard library and built-ins"
    return "other"


def demo_database(name: str) -> None:
    """A fresh PostgreSQL database with the schema and the demo data."""
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    env = database_env(name)
    for command in (["db", "upgrade"], ["seed", "demo"]):
        subprocess.run([sys.executable, "-m", "flask", *command], env=env, check=True, capture_output=True)


def signed_in_client(app, email: str):
    client = app.test_client()
    form = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)[1]
    answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    if answer.status_code != 302:
        raise SystemExit(f"signing in as {email} failed: {answer.status_code}")
    return client


def by_layer(stats: pstats.Stats) -> dict[str, float]:
    seconds = defaultdict(float)
    for (filename, _line, _name), (_calls, _primitive, own, _cumulative, _callers) in stats.stats.items():
        seconds[layer_of(filename)] += own
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the page, e.g. /account/subscription")
    parser.add_argument("--role", choices=sorted(ROLE_EMAILS), default="user")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--htmx", action="store_true", help="request it as HTMX does (HX-Request)")
    parser.add_argument("--conditional", action="store_true",
                        help="send back the ETag of the first answer (If-None-Match): a 304 poll")
    parser.add_argument("--database", help="an existing database to use (default: a fresh demo database)")
    parser.add_argument("--top", type=int, default=15, help="how many of our functions to list")
    args = parser.parse_args(argv)

    database = args.database or "bench_profile"
    if not args.database:
        demo_database(database)
    os.environ.update(database_env(database))
    from bench.wsgi import console  # after the environment names the database

    client = signed_in_client(console, ROLE_EMAILS[args.role])
    headers = {"HX-Request": "true"} if args.htmx else {}
    first = client.get(args.path, headers=headers)
    if first.status_code != 200:
        raise SystemExit(f"{args.path} answered {first.status_code}")
    if args.conditional:
        if not first.headers.get("ETag"):
            raise SystemExit(f"{args.path} sent no ETag")
        headers["If-None-Match"] = first.headers["ETag"]
    expected = 304 if args.conditional else 200

    def requests() -> float:
        """Seconds per request, over ``--requests`` of them."""
        started = time.perf_counter()
        for _ in range(args.requests):
            answer = client.get(args.path, headers=headers)
            if answer.status_code != expected:
                raise SystemExit(f"{args.path} answered {answer.status_code}, not {expected}")
        return (time.perf_counter() - started) / args.requests

    plain = requests()
    profiler = cProfile.Profile()
    profiler.enable()
    profiled_each = requests()
    profiler.disable()

    stats = pstats.Stats(profiler)
    layers = by_layer(stats)
    profiled = sum(layers.values())
    print(f"{args.path} as {args.role}{' (HTMX)' if args.htmx else ''}{' (304 poll)' if args.conditional else ''}: "
          f"{args.requests} requests, {1000 * plain:.2f} ms each ({1000 * profiled_each:.2f} ms under the "
          f"profiler, which slows Python code more than the database's own time)\n")
    print("| layer | share of the time |\n|---|---:|")
    for layer, own in sorted(layers.items(), key=lambda item: -item[1]):
        print(f"| {layer} | {100 * own / profiled:.1f}% |")
    print(f"\nOur functions by cumulative time per request (ms, under the profiler):")
    ours = [(cumulative, name, filename, line)
            for (filename, line, name), (_c, _p, _own, cumulative, _callers) in stats.stats.items()
            if "/webapp/" in filename]
    for cumulative, name, filename, line in sorted(ours, reverse=True)[:args.top]:
        where = filename.split("/webapp/", 1)[1]
        print(f"  {1000 * cumulative / args.requests:7.2f}  webapp/{where}:{line} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
