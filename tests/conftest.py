"""Fixtures: an app per database backend, a rolled-back transaction per test,
query counting, a signed-in client, and a live server with headless Chromium.

Every test that touches the database runs once on SQLite and once on
PostgreSQL (when TEST_DATABASE_URL is set). In CI a missing PostgreSQL or
Chromium fails the run instead of skipping.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask, request_finished
from flask.testing import FlaskClient
from flask_migrate import upgrade
from werkzeug.serving import make_server
from xdist.scheduler import LoadScopeScheduling

from webapp import create_app
from webapp.extensions import db

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
# The suite runs in two pytest-xdist workers (pyproject's addopts), each on PostgreSQL databases of
# its own: minion_test_gw0, minion_test_gw0_live, ... (SQLite files are in each worker's own tmp).
XDIST_WORKER_SUFFIX = f"_{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "test-artifacts")


def pytest_configure(config):
    if IN_CI and not TEST_DATABASE_URL:
        raise pytest.UsageError("CI must run the PostgreSQL tests: set TEST_DATABASE_URL")


def pytest_sessionstart(session):
    """Say so when the PostgreSQL half of the suite is not generated, rather than leave it silent."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not TEST_DATABASE_URL and reporter is not None:
        reporter.write_line("TEST_DATABASE_URL is not set: only the SQLite half of the database tests runs.")


# The slowest test files, slowest first (see `pytest --durations=40`): they are handed out first,
# so that no worker is left alone with one of them at the end of the run.
SLOWEST_FILES = (
    "tests/browser/test_every_page.py",
    "tests/test_hostile_input.py",
    "tests/browser/test_training_engine.py",
    "tests/training/test_broker.py",
    "tests/test_authorization_matrix.py",
    "tests/browser/test_jobs_leaderboard.py",
    "tests/test_start.py",
    "tests/test_rate_limits.py",
    "tests/browser/test_layout.py",
)


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def backend_of(nodeid: str) -> str:
    """The database backend a test id runs on ("" for a test that takes none)."""
    params = nodeid.partition("[")[2].removesuffix("]").split("-")
    return next((backend for backend in ("sqlite", "postgresql") if backend in params), "")


class FileAndBackendScheduling(LoadScopeScheduling):
    """pytest-xdist's unit of work: one test file on one backend, handed out in collection order.

    A file's SQLite and PostgreSQL halves may run side by side on two workers. The collection
    puts SLOWEST_FILES first (pytest_collection_modifyitems), and the small files at the end
    keep both workers busy until the last test.
    """

    def __init__(self, config, log=None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # the collection's order, not "most tests first"

    def _split_scope(self, nodeid: str) -> str:
        return f"{file_of(nodeid)}[{backend_of(nodeid)}]"


def pytest_xdist_make_scheduler(config, log):
    return FileAndBackendScheduling(config, log)


def slowest_first(item) -> int:
    path = file_of(item.nodeid)
    return SLOWEST_FILES.index(path) if path in SLOWEST_FILES else len(SLOWEST_FILES)


@pytest.hookimpl(trylast=True)  # after pytest has grouped the tests by their fixtures' parameters
def pytest_collection_modifyitems(config, items):
    """postgres_only tests are not collected for the SQLite run (rather than skipped); the slowest
    files come first (a stable sort: each file's own order stays)."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        on_sqlite = params is not None and params.params.get("backend") == "sqlite"
        (drop if on_sqlite and item.get_closest_marker("postgres_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = sorted(keep, key=slowest_first)
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" in mutant:
        items.sort(key=lambda item: nearness_to(mutant, file_of(item.nodeid)))


def nearness_to(mutant: str, test_file: str) -> int:
    """How near a test file is to a mutant's module: its own test file 0, its domain's tests 1, others 2.

    mutmut runs a mutant against every test that reaches its function, in no set order, and stops at
    the first failure. A hot function (sign-in, sessions, usage) is reached by hundreds of tests, most
    of them in other domains; run its own domain's tests first, and a killed mutant dies in a few."""
    _package, domain, module = mutant.split(".")[:3]
    if test_file == f"tests/{domain}/test_{module}.py":
        return 0
    return 1 if test_file.startswith(f"tests/{domain}/") else 2


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip is a failure: the PostgreSQL and browser tests must really run."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


def database_url(backend: str, tmp_dir, suffix: str = "") -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_dir}/test{suffix}.sqlite3"
    url = sa.make_url(TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    return url.set(database=url.database + XDIST_WORKER_SUFFIX + suffix).render_as_string(hide_password=False)


def postgres_admin(url: str):
    """An autocommit engine on the server's ``postgres`` database, for CREATE and DROP DATABASE."""
    return sa.create_engine(sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def reset_postgres(url: str) -> None:
    """Empty the PostgreSQL test database (creating it if needed) before migrating."""
    target = sa.make_url(url)
    admin = postgres_admin(url)
    with admin.connect() as conn:
        exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database})
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()
    engine = sa.create_engine(target)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


def copy_database(backend: str, source_url: str, target_url: str) -> None:
    """Replace the target database with a copy of the source (which nothing may be connected to)."""
    source, target = sa.make_url(source_url).database, sa.make_url(target_url).database
    if backend == "sqlite":
        shutil.copyfile(source, target)
        return
    admin = postgres_admin(target_url)
    with admin.connect() as conn:
        # FORCE: a finished app of the same name (an earlier module's) may still hold a pooled connection.
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target}" TEMPLATE "{source}" STRATEGY WAL_LOG')
    admin.dispose()


class MigratedTemplates:
    """Each backend's schema is migrated once per run; every later test database is a copy of it.

    Running the migrations costs seconds per database, and the suite makes dozens (an app of
    their own for live servers, races, brokers, timeouts). The first database of each backend
    is migrated for real and kept as the template: a file copy on SQLite, CREATE DATABASE ...
    TEMPLATE on PostgreSQL. tests/test_schema.py still runs the migrations down and up.
    """

    def __init__(self) -> None:
        self.folder: str | None = None
        self.templates: dict[str, str] = {}

    def copy_into(self, backend: str, url: str) -> bool:
        """Make ``url``'s database a copy of the migrated template; False when there is none yet."""
        if backend not in self.templates:
            return False
        copy_database(backend, self.templates[backend], url)
        return True

    def keep(self, backend: str, app) -> None:
        """Keep ``app``'s freshly migrated database as ``backend``'s template."""
        with app.app_context():
            db.engine.dispose()  # nothing may be connected to a database being copied
        if backend == "sqlite":
            self.folder = self.folder or tempfile.mkdtemp(prefix="minion-schema-")
            template = f"sqlite:///{self.folder}/template.sqlite3"
        else:
            template = database_url(backend, None, "_template")
        copy_database(backend, app.config["SQLALCHEMY_DATABASE_URI"], template)
        self.templates[backend] = template

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


MIGRATED = MigratedTemplates()
# Removed when the process ends, not when pytest does: mutmut runs pytest several times in one
# process (and in forks of it, which leave without running this), each time on the same templates.
atexit.register(MIGRATED.remove)


def make_test_app(backend: str, tmp_dir, suffix: str = "", **overrides):
    url = database_url(backend, tmp_dir, suffix)
    copied = MIGRATED.copy_into(backend, url)
    if backend == "postgresql" and not copied:
        reset_postgres(url)
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "test-secret-key",
        "WTF_CSRF_ENABLED": False,
        "MAIL_BACKEND": "memory",
        "RATELIMIT_ENABLED": False,
        "BASE_URL": "http://console.test",
        "DEMO_PASSWORD": "demo-password-123",
        # argon2's cheapest parameters: a sign-in costs microseconds, not a tenth of a second. The
        # production profile is checked by tests/test_factory.py and the rehash test in tests/accounts.
        "PASSWORD_HASH_PROFILE": "CHEAPEST",
        # Dispatched jobs wait in memory: no worker runs in ordinary tests (tests/training/broker run them).
        "CELERY_BROKER_URL": "memory://",
        # Stripe's webhook answers (verifying signatures); the gateway stays manual without a secret key.
        "STRIPE_WEBHOOK_SECRET": "whsec_test_console_webhooks",
    }
    config.update(overrides)
    os.environ.setdefault("INSTANCE_PATH", str(tmp_dir / "instance"))
    app = create_app(config)
    app.test_client_class = FreshContextClient
    if not copied:
        with app.app_context():
            upgrade()
        MIGRATED.keep(backend, app)
    return app


@contextlib.contextmanager
def app_of_its_own(backend: str, tmp_dir, suffix: str = "", **overrides) -> Iterator[Flask]:
    """An app on a database of its own, where requests and tests commit for real (races, servers,
    workers); its connections are closed on leaving, so the next copy over its database can drop it."""
    app = make_test_app(backend, tmp_dir, suffix, **overrides)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def backend_apps():
    """Each backend's app, made on first use and kept for the whole run of this test process.

    pytest keeps one value of a parametrized session fixture at a time, and a pytest-xdist worker
    runs a file's SQLite tests and then its PostgreSQL ones: a session-scoped ``app`` was torn down
    and made again twice per file. Kept here, switching backends costs nothing.
    """
    apps: dict[str, Flask] = {}
    yield apps
    for made in apps.values():
        with made.app_context():
            db.engine.dispose()


@pytest.fixture(scope="module")
def app(backend, backend_apps, tmp_path_factory) -> Flask:
    if backend not in backend_apps:
        backend_apps[backend] = make_test_app(backend, tmp_path_factory.mktemp(backend))
    return backend_apps[backend]


@pytest.fixture
def db_session(app):
    """Everything a test writes, views included, is rolled back at its end.

    Flask-SQLAlchemy 3 ignores Session(bind=...), so the default engine is
    swapped for one open connection and sessions join it through savepoints.
    """
    with app.app_context():
        connection = db.engine.connect()
        transaction = connection.begin()
        engines = db._app_engines[app]
        engine = engines[None]
        engines[None] = connection
        db.session.remove()
        db.session.configure(join_transaction_mode="create_savepoint")
        try:
            yield db.session
        finally:
            db.session.remove()
            transaction.rollback()
            connection.close()
            engines[None] = engine


class FreshContextClient(FlaskClient):
    """Each request in its own app context, as in production: a fresh ``g``
    (Flask-Login caches the user there) and a fresh session, while the test's own
    app context stays pushed around it. A response that is not streamed is read whole
    and closed, as a server does after sending it, so work queued for after the response
    (webapp.mail.after_response) has run on return; a streamed one is left to the test."""

    def open(self, *args, **kwargs):
        finished = []
        with self.application.app_context(), request_finished.connected_to(
            lambda _app, response, **_extra: finished.append(response), self.application
        ):
            response = super().open(*args, **kwargs)
        if finished and finished[-1].is_sequence:
            response.make_sequence()
            response.close()
        return response


@pytest.fixture
def client(app, db_session):
    app.test_client_class = FreshContextClient
    return app.test_client()


@pytest.fixture
def store(app, tmp_path):
    """A fresh artifact folder for this test, so what an upload leaves behind can be listed."""
    previous = app.config["ARTIFACT_STORE_URL"]
    app.config["ARTIFACT_STORE_URL"] = str(tmp_path / "artifacts")
    yield tmp_path / "artifacts"
    app.config["ARTIFACT_STORE_URL"] = previous


@pytest.fixture
def csrf_enabled(app):
    app.config["WTF_CSRF_ENABLED"] = True
    yield
    app.config["WTF_CSRF_ENABLED"] = False


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        # SQLite's BEGIN is sent as a statement (webapp.db), PostgreSQL's is not: neither is a query.
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO", "BEGIN")):
            self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_queries(app, db_session):
    """Usage: ``with count_queries() as counter: client.get(...)``; then ``counter.count``."""

    @contextlib.contextmanager
    def counting() -> Iterator[QueryCounter]:
        counter = QueryCounter()
        connection = db._app_engines[app][None]
        sa.event.listen(connection, "before_cursor_execute", counter)
        try:
            yield counter
        finally:
            sa.event.remove(connection, "before_cursor_execute", counter)

    return counting


# --- live server and browser -------------------------------------------------


class LiveServer:
    def __init__(self, app) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="module")
def live_server(backend, tmp_path_factory):
    """The console on a real port with its own migrated database and demo data."""
    from webapp.seed.demo import seed_demo

    tmp_dir = tmp_path_factory.mktemp(f"live-{backend}")
    # Mail goes to the outbox table, as on the embedded start, so browser tests read it in the admin.
    with app_of_its_own(backend, tmp_dir, "_live", WTF_CSRF_ENABLED=True, SERVER_NAME=None,
                        MAIL_BACKEND="outbox") as app:
        with app.app_context():
            seed_demo(app.config["DEMO_PASSWORD"])
        with LiveServer(app) as server:
            app.config["BASE_URL"] = server.url
            yield server


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    os.makedirs(ARTIFACTS, exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    with contextlib.suppress(Exception):
        page.screenshot(path=os.path.join(ARTIFACTS, f"{name}-final.png"), full_page=True)
    context.close()


def attempt_login(client, user_or_email, password: str | None = None, remember: bool = False):
    """Post the real sign-in form once and return the response, whatever it is."""
    from tests.factories import PASSWORD

    email = getattr(user_or_email, "email", user_or_email)
    return client.post(
        "/login",
        data={"email": email, "password": password or PASSWORD, "remember": "y" if remember else ""},
    )


def login(client, user_or_email, password: str | None = None, remember: bool = False):
    """Sign ``client`` in through the real sign-in form; the test fails here if that did not sign it in.

    Signed in means: the form redirected, and the cookie's session token belongs to an
    active session of this very account (not an earlier one the client was already in).
    """
    from webapp.accounts.models import User, UserSession
    from webapp.security import hash_token

    email = getattr(user_or_email, "email", user_or_email)
    response = attempt_login(client, user_or_email, password, remember)
    assert response.status_code == 302, f"sign-in as {email} failed: {response.status_code}, not a redirect"
    with client.session_transaction() as session:
        token = session.get("_user_id")
    assert token, f"sign-in as {email} left no session token in the cookie"
    # Its own app context, so it also serves tests that run outside one (the concurrency tests).
    with client.application.app_context():
        signed_in_as = db.session.scalar(
            sa.select(User.email).join(UserSession, UserSession.user_id == User.id)
            .where(UserSession.session_token_hash == hash_token(token), UserSession.is_active)
        )
    assert signed_in_as is not None and signed_in_as.lower() == email.lower(), (
        f"sign-in as {email} did not sign in (the cookie's session belongs to {signed_in_as})"
    )
    return response
