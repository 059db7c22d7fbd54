"""Every rule of ``app.url_map``, sent hostile values in every parameter, as each role.

Built like tests/test_authorization_matrix.py and from the same rows: each rule starts
from its matrix request. The query string and form fields a view reads are recorded
while it answers that request, so a route added later is walked with its own fields;
tests/<domain>/hostile.py adds what the recording cannot see (see tests/hostile.py).

Each parameter gets every value, one parameter group at a time (the path's arguments,
then the query, form and JSON fields together), as the role that reaches the view most
deeply; every other role gets a sample. The walk fails on any 500 and on any change a
refused (4xx) request leaves in the database; each request runs in a savepoint that is
rolled back after it.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import sqlalchemy as sa
from flask import Request
from werkzeug.datastructures import ImmutableMultiDict

from tests.authz import ROLES, Route, World
from tests.conftest import FreshContextClient
from tests.factories import make_session, make_user
from tests.hostile import JSON_VALUES, RAW_JSON_BODIES, TEXT_VALUES, Fields, json_raw
from tests.test_authorization_matrix import app_routes, route_modules, rules_of
from webapp.extensions import db

TESTS_DIR = Path(__file__).parent
NOT_REACHED = ("login", 401, 403)
# HOSTILE_WALK=full sends every value to every rule as every role reaching it (several minutes);
# the default sends every value to every rule outside the admin, whose ModelViews share one class:
# there each kind of rule gets every value on one view and a rotating sample on the others.
FULL = os.environ.get("HOSTILE_WALK") == "full"
ADMIN_SAMPLE_STRIDE = 12
FILLABLE_CONVERTERS = {"IntegerConverter", "UnicodeConverter", "PathConverter", "BoundedIntConverter"}
# Each role that is not the deepest gets every SAMPLE_STRIDE-th value, starting at its own offset.
SAMPLE_STRIDE = 1 if FULL else 14


def hostile_modules() -> list:
    paths = sorted(TESTS_DIR.glob("*/hostile.py")) + sorted(TESTS_DIR.glob("*/*/hostile.py"))
    names = [".".join(("tests", *path.relative_to(TESTS_DIR).with_suffix("").parts)) for path in paths]
    return [importlib.import_module(name) for name in names]


# --- recording which fields a view reads ------------------------------------------------

READ_KEYS: set[tuple[str, str]] = set()


def recording(source: str) -> type[ImmutableMultiDict]:
    class RecordingMultiDict(ImmutableMultiDict):
        def __getitem__(self, key):
            READ_KEYS.add((source, key))
            return super().__getitem__(key)

        def get(self, key, default=None, type=None):
            READ_KEYS.add((source, key))
            return super().get(key, default, type)

        def getlist(self, key, type=None):
            READ_KEYS.add((source, key))
            return super().getlist(key, type)

        def __contains__(self, key):
            READ_KEYS.add((source, key))
            return super().__contains__(key)

    return RecordingMultiDict


class RecordingRequest(Request):
    """A request whose query string and form remember every key looked up."""

    @property
    def args(self):
        return recording("query")(super().args)

    def _load_form_data(self) -> None:
        super()._load_form_data()
        self.form = recording("form")(self.form)


# --- building requests ---------------------------------------------------------------------


def encoded(value: str) -> str:
    """Percent-encoded UTF-8; a lone surrogate is sent as the (invalid) bytes it would encode to."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def urlencoded(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{encoded(key)}={encoded(value)}" for key, value in pairs)


@dataclass
class Target:
    """One rule to walk: its matrix request, the fields to fill and the role that reaches deepest."""

    route: Route
    fields: Fields
    deepest: str
    reaching: tuple[str, ...]
    admin_kind: str | None = None  # the rule's shape under /admin/<view>, e.g. "/edit/"
    admin_full: bool = False  # the view whose rule of this kind gets every value


def split_url(url: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(url)
    return parts.path, parse_qsl(parts.query, keep_blank_values=True)


def path_with(route: Route, value: str) -> str:
    """The route's path with every argument of its rule replaced by ``value``."""
    path, _ = split_url(route.url)
    rule_parts, path_parts = route.rule.split("/"), path.split("/")
    for index, part in enumerate(rule_parts):
        if part.startswith("<") and part.endswith(">"):
            path_parts[index] = encoded(value)
            if ":" in part and part[1:].startswith("path:"):
                path_parts = path_parts[: index + 1]
                break
    return "/".join(path_parts)


def session_cookies(app, tokens: dict[str, str | None]) -> dict[str, str | None]:
    """Each role's signed session cookie, made once (a session_transaction per request costs as much as one)."""
    cookies: dict[str, str | None] = {}
    for role, token in tokens.items():
        cookies[role] = None
        if token:
            client = FreshContextClient(app, app.response_class, use_cookies=True)
            with client.session_transaction() as session:
                session["_user_id"] = token
                session["_fresh"] = True
            cookies[role] = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    return cookies


def send(app, cookie: str | None, method: str, path: str, query: list[tuple[str, str]],
         form: list[tuple[str, str]] | None = None, json_text: str | None = None, headers=None):
    client = FreshContextClient(app, app.response_class, use_cookies=True)
    if cookie:
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    kwargs = {"headers": dict(headers or {})}
    if form is not None:
        kwargs["data"] = urlencoded(form).encode("ascii")
        kwargs["content_type"] = "application/x-www-form-urlencoded"
    elif json_text is not None:
        kwargs["data"] = json_text.encode("utf-8", "surrogatepass")
        kwargs["content_type"] = "application/json"
    response = client.open(path, method=method, query_string=urlencoded(query), **kwargs)
    response.get_data()  # a streamed body (CSV export) fails while it is read
    return response


# A signed-in request moves its session's last_seen_at (and so updated_at) whatever it answers.
BOOKKEEPING_TABLES = {"sessions"}
LAST_SEEN_UPDATE = re.compile(r"UPDATE sessions SET last_seen_at=[^,]+(, updated_at=[^,]+)? WHERE sessions\.id = \S+$")


def fingerprint(connection) -> tuple:
    """Rows, lock versions and latest update of every table, in one query."""
    columns = []
    for table in db.metadata.sorted_tables:
        columns.append(sa.select(sa.func.count()).select_from(table).scalar_subquery().label(f"{table.name} rows"))
        columns.append(sa.select(sa.func.coalesce(sa.func.sum(table.c.lock_version), 0)).scalar_subquery()
                       .label(f"{table.name} lock versions"))
        if table.name not in BOOKKEEPING_TABLES:
            columns.append(sa.select(sa.func.max(table.c.updated_at)).scalar_subquery()
                           .label(f"{table.name} updated_at"))
    row = connection.execute(sa.select(*columns)).one()
    return tuple(zip(row._fields, row))


@contextlib.contextmanager
def undone(connection) -> Iterator[None]:
    """Whatever runs inside is rolled back: a savepoint, rolled back to and then released.

    SQLAlchemy's nested transaction only rolls back to its savepoint, which the database keeps:
    the next one would nest inside it, and on PostgreSQL every level under which a request wrote
    keeps a transaction-id lock until the test ends. Over thousands of requests that fills the
    server's lock table ("out of shared memory") for every connection.
    """
    savepoint = connection.begin_nested()
    try:
        yield
    finally:
        savepoint.rollback()
        connection.exec_driver_sql(f"RELEASE SAVEPOINT {savepoint._savepoint}")


class Walk:
    def __init__(self, app, tokens: dict[str, str | None]) -> None:
        self.app = app
        self.tokens = tokens
        self.connection = db._app_engines[app][None]
        self.baseline = fingerprint(self.connection)
        self.requests = 0
        self.errors: list[str] = []
        self.stored: list[str] = []
        self.statuses: Counter = Counter()
        self.wrote = False
        sa.event.listen(self.connection, "before_cursor_execute", self.note_writes)

    def note_writes(self, conn, cursor, statement, parameters, context, executemany) -> None:
        # Only a request that wrote can have stored something: the others skip the fingerprint query.
        # So does one whose only write is its session's last-seen time, which the fingerprint leaves
        # out (BOOKKEEPING_TABLES): every signed-in request makes it, since each rolls back the last.
        statement = statement.lstrip()
        if statement[:6].upper() in ("INSERT", "UPDATE", "DELETE") and not LAST_SEEN_UPDATE.match(statement):
            self.wrote = True

    def close(self) -> None:
        sa.event.remove(self.connection, "before_cursor_execute", self.note_writes)

    def request(self, role: str, method: str, rule: str, description: str, **parts) -> int:
        self.wrote = False
        with undone(self.connection):
            try:
                status = send(self.app, self.tokens[role], method, **parts).status_code
            except Exception as error:  # noqa: BLE001  (an exception that escapes the app is its 500)
                status = 500
                description += f" raised {type(error).__name__}: {str(error)[:200]}"
            if status >= 400 and status != 500 and self.wrote:
                changed = [name for name, value in set(fingerprint(self.connection)) - set(self.baseline)]
                if changed:
                    self.stored.append(f"{method} {rule} as {role}: {description} answered {status} "
                                       f"but changed {', '.join(sorted(changed))}")
        self.requests += 1
        self.statuses[status // 100] += 1
        if status >= 500 and status != 503:
            self.errors.append(f"{method} {rule} as {role}: {description} -> {status}")
        return status

    def walk(self, target: Target) -> None:
        route = target.route
        for role in target.reaching:
            values = list(enumerate(TEXT_VALUES))
            json_values = list(enumerate(JSON_VALUES))
            raw_bodies = list(enumerate(RAW_JSON_BODIES))
            stride, offset = 1, 0
            if role != target.deepest:
                stride, offset = SAMPLE_STRIDE, ROLES.index(role)
            elif not FULL and target.admin_kind and not target.admin_full:
                stride, offset = ADMIN_SAMPLE_STRIDE, zlib.crc32(route.rule.encode()) % ADMIN_SAMPLE_STRIDE
            values, json_values, raw_bodies = (
                items[offset % stride::stride] for items in (values, json_values, raw_bodies))
            for index, value in values:
                self.walk_value(role, route, target.fields, index, value)
            if route.json is not None or target.fields.json:
                self.walk_json(role, route, target.fields, json_values, raw_bodies)

    def base(self, route: Route, index: int):
        path, query = split_url(route.url)
        headers = dict(route.headers)
        if index % 2:
            headers["HX-Request"] = "true"
        form = [(key, str(value)) for key, value in route.data.items()] if route.data else None
        if form is None and route.method == "POST" and route.json is None:
            form = []
        json_text = json.dumps(route.json) if route.json is not None else None
        return path, query, form, json_text, headers

    def walk_value(self, role: str, route: Route, fields: Fields, index: int, value: str) -> None:
        path, query, form, json_text, headers = self.base(route, index)
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        if "<" in route.rule:
            self.request(role, route.method, route.rule, f"path argument {shown}",
                         path=path_with(route, value), query=query, form=form,
                         json_text=json_text, headers=headers)
        if fields.query or fields.form or fields.json:
            query = [(k, v) for k, v in query if k not in fields.query] + [(k, value) for k in fields.query]
            if form is not None:
                form = [(k, v) for k, v in form if k not in fields.form] + [(k, value) for k in fields.form]
            if fields.json:
                body = dict(route.json or {})
                body.update(dict.fromkeys(fields.json, value))
                json_text = json.dumps(body, ensure_ascii=True)
            self.request(role, route.method, route.rule, f"fields {shown}", path=path, query=query, form=form,
                         json_text=json_text, headers=headers)

    def walk_json(self, role: str, route: Route, fields: Fields, json_values, raw_bodies) -> None:
        path, query, _, _, headers = self.base(route, 0)
        names = fields.json or tuple(route.json or ())
        for index, value in json_values:
            body = dict(route.json or {})
            body.update(dict.fromkeys(names, value))
            text = "{" + ", ".join(f"{json.dumps(k)}: {json_raw(v)}" for k, v in body.items()) + "}"
            self.request(role, route.method, route.rule, f"JSON value #{index} {json_raw(value)[:40]}",
                         path=path, query=query, json_text=text, headers=headers)
        for index, text in raw_bodies:
            self.request(role, route.method, route.rule, f"JSON body #{index} {text[:40]!r}",
                         path=path, query=query, json_text=text, headers=headers)


def discover(app, tokens, connection, route: Route, roles: tuple[str, ...]) -> dict[str, set[tuple[str, str]]]:
    """The query and form keys the view reads as each role, recorded while it answers the matrix request."""
    read: dict[str, set[tuple[str, str]]] = {}
    request_class = app.request_class
    app.request_class = type("Recording" + request_class.__name__, (RecordingRequest, request_class), {})
    try:
        for role in roles:
            READ_KEYS.clear()
            with undone(connection):
                path, query = split_url(route.url)
                send(app, tokens[role], route.method, path, query,
                     form=[(k, str(v)) for k, v in route.data.items()] if route.data else None,
                     json_text=json.dumps(route.json) if route.json is not None else None, headers=route.headers)
            read[role] = set(READ_KEYS)
    finally:
        app.request_class = request_class
    return read


def admin_kind(rule: str) -> str | None:
    """"/edit/" for "/admin/users/edit/": the rule every ModelView registers, None outside them."""
    parts = rule.split("/")
    if len(parts) < 4 or parts[1] != "admin" or parts[2] == "static":
        return None
    return "/" + "/".join(parts[3:])


def targets(app, world: World, tokens, connection) -> list[Target]:
    routes = app_routes(world) + [route for module in route_modules() for route in module.routes(world)]
    extra: dict[tuple[str, str], Fields] = {}
    bases: dict[tuple[str, str], Route] = {}
    for module in hostile_modules():
        extra.update(getattr(module, "extra_fields", lambda w: {})(world))
        bases.update({(r.method, r.rule): r for r in getattr(module, "bases", lambda w: [])(world)})
    chosen: dict[tuple[str, str], Route] = {}
    for route in routes:
        chosen.setdefault((route.method, route.rule), route)
    chosen.update(bases)

    unknown = []
    found = []
    converters = {rule.rule: rule._converters for rule in app.url_map.iter_rules()}
    for key, route in sorted(chosen.items()):
        method, rule = key
        for name, converter in converters[rule].items():
            if type(converter).__name__ not in FILLABLE_CONVERTERS:
                unknown.append(f"{method} {rule}: no hostile values for <{name}> ({type(converter).__name__})")
        reaching = tuple(role for role in ROLES if route.expect[role] not in NOT_REACHED)
        if not reaching:
            unknown.append(f"{method} {rule}: its request reaches the view for no role; "
                           "add a base request to tests/<domain>/hostile.py")
            continue
        read = discover(app, tokens, connection, route, reaching)
        deepest = max(reversed(reaching), key=lambda role: len(read[role]))
        keys = set().union(*read.values())
        more = extra.get(key, Fields())
        _, query = split_url(route.url)
        fields = Fields(
            query=tuple(sorted({k for source, k in keys if source == "query"} | {k for k, _ in query} | set(more.query))),
            form=tuple(sorted({k for source, k in keys if source == "form"} | set(route.data) | set(more.form))),
            json=tuple(sorted(set(route.json or ()) | set(more.json))) if isinstance(route.json or {}, dict) else (),
        )
        found.append(Target(route, fields, deepest, reaching, admin_kind(rule)))
    full_kind = {}
    for target in found:
        if target.admin_kind:
            full_kind.setdefault(target.admin_kind, target)
    for target in full_kind.values():
        target.admin_full = True
    assert not unknown, "the hostile walk cannot fill:\n" + "\n".join(unknown)
    return found


def test_hostile_values_get_a_clear_refusal_and_change_nothing(app, db_session):
    world = World(user=make_user("user"), support=make_user("support"), admin=make_user("admin"),
                  other=make_user("user"))
    tokens: dict[str, str | None] = {"anonymous": None}
    for role in ROLES[1:]:
        user = getattr(world, role)
        make_session(user, "127.0.0.1", "hostile walk")
        tokens[role] = user.session_token
    tokens = session_cookies(app, tokens)
    connection = db._app_engines[app][None]
    walked = targets(app, world, tokens, connection)
    missing = {key for key in rules_of(app)} - {(t.route.method, t.route.rule) for t in walked}
    assert not missing, f"rules the walk did not reach: {sorted(missing)}"

    walk = Walk(app, tokens)
    try:
        for target in walked:
            walk.walk(target)
    finally:
        walk.close()
    print(f"\nhostile walk: {walk.requests} requests, {len(walk.errors)} answered 500, "
          f"statuses {dict(sorted(walk.statuses.items()))}, {len(walk.stored)} refused but stored")
    problems = walk.errors + walk.stored
    assert not problems, f"{len(walk.errors)} of {walk.requests} hostile requests answered 500 and " \
                         f"{len(walk.stored)} refused ones stored a change:\n" + "\n".join(problems[:200])
