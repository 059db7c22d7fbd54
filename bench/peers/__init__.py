"""The peers: Django admin and sqladmin over the same scale database, each in a virtual environment of its own.

Each peer's folder holds its project and a requirements file with pinned versions; the harness creates
``.venv-<peer>`` beside it on first use (and again when the requirements change). The peers serve
the console's tables read-only, with the same workers-per-core as the console's gunicorn.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.serve import Service, form_sign_in, free_port

PEERS_DIR = Path(__file__).resolve().parent
DJANGO = "Django admin"
DJANGO_NO_COUNT = "Django admin, no full count"
SQLADMIN = "sqladmin (no sign-in)"
COLUMNS = (DJANGO, DJANGO_NO_COUNT, SQLADMIN)
DJANGO_USER = "bench-admin"
# Created, or given the run's password when a reused database has it already.
SUPERUSER = """
from django.contrib.auth.models import User
user, _ = User.objects.get_or_create(username={name!r}, defaults={{"is_staff": True, "is_superuser": True}})
user.set_password({password!r})
user.save()
"""


@dataclass(frozen=True)
class AdminList:
    """One admin list and its equivalents: its table, and a filter in each admin's query syntax."""

    table: str                # also the console's admin URL segment
    ours_filter: str
    django_model: str
    django_filter: str
    sqladmin_identity: str
    sqladmin_filter: str


def environment(peer: str) -> Path:
    """The Python of the peer's virtual environment, created or updated from its requirements file."""
    venv = PEERS_DIR / f".venv-{peer}"
    python = venv / "bin" / "python"
    requirements = PEERS_DIR / peer / "requirements.txt"
    installed = venv / "installed-requirements.txt"
    if not installed.exists() or installed.read_text() != requirements.read_text():
        print(f"   installing {peer}'s requirements into {venv.name}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
        shutil.copyfile(requirements, installed)
    return python


def django_admin(database_url: str, password: str) -> Service:
    """Django admin's gunicorn, after creating Django's own tables and a superuser in the database."""
    python, cwd = str(environment("django_admin")), PEERS_DIR / "django_admin"
    env = {**os.environ, "DATABASE_URL": database_url}
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=cwd, env=env, check=True)
    subprocess.run([python, "manage.py", "shell", "-v", "0", "-c", SUPERUSER.format(name=DJANGO_USER, password=password)],
                   cwd=cwd, env=env, check=True)
    port = free_port()
    return Service([python, "-m", "gunicorn", "-w", str(os.cpu_count() or 2), "-b", f"127.0.0.1:{port}",
                    "--log-level", "warning", "peer.wsgi:application"], env, cwd, "/admin/login/", port)


def sqladmin(database_url: str) -> Service:
    python, cwd = str(environment("sqladmin_app")), PEERS_DIR / "sqladmin_app"
    port = free_port()
    return Service([python, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", str(os.cpu_count() or 2), "--no-access-log", "--log-level", "warning"],
                   {**os.environ, "DATABASE_URL": database_url}, cwd, "/admin/", port)


def django_sign_in(server: Service, password: str) -> str:
    """Sign the superuser in through Django admin's login form; the Cookie header of that browser."""
    return form_sign_in(server, "/admin/login/", "csrfmiddlewaretoken",
                        {"username": DJANGO_USER, "password": password, "next": "/admin/"})


def peer_paths(admin_list: AdminList, page: str, search: str, deep_index: int, record_id: str) -> dict[str, str]:
    """Each peer column's URL for one of our admin pages: "first", "filtered", "search", "deep" or "details".

    ``deep_index`` counts pages from 0, as Flask-Admin does; Django and sqladmin count from 1.
    """
    django = f"/peer/{admin_list.django_model}/"
    sq = f"/admin/{admin_list.sqladmin_identity}/"
    if page == "details":
        return {DJANGO: f"/admin{django}{record_id}/change/", DJANGO_NO_COUNT: f"/admin-nocount{django}{record_id}/change/",
                SQLADMIN: f"{sq}details/{record_id}"}
    django_query = {"first": "", "filtered": f"?{admin_list.django_filter}", "search": f"?q={search}",
                    "deep": f"?p={deep_index + 1}"}[page]
    sqladmin_query = {"first": "", "filtered": f"?{admin_list.sqladmin_filter}", "search": f"?search={search}",
                      "deep": f"?page={deep_index + 1}"}[page]
    return {DJANGO: f"/admin{django}{django_query}", DJANGO_NO_COUNT: f"/admin-nocount{django}{django_query}",
            SQLADMIN: f"{sq}list{sqladmin_query}"}
