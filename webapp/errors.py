"""Error pages, and a 503 with Retry-After when the database is unreachable."""
from __future__ import annotations

from flask import Flask, current_app, g, jsonify, render_template, request
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from webapp.db import ValueOutOfRange
from webapp.extensions import db, login_manager

TITLES = {
    400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Too large", 422: "Unprocessable",
    429: "Too many requests", 500: "Something went wrong", 503: "Temporarily unavailable",
}
MESSAGES = {
    403: "Your account does not have permission to open this page.",
    409: "Someone else changed this record at the same time, so your change was not saved. "
         "Reload to see their version, then make your change again.",
    404: "There is nothing here. It may have been removed, or the link is wrong.",
    413: "The request is larger than this console accepts, so nothing was saved.",
    429: "Too many attempts. Wait a minute and try again.",
    500: "An unexpected error happened on our side. It has been logged.",
    503: "The database cannot be reached right now, so nothing was saved. Try again in a moment.",
}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(code: int, detail: str | None = None):
    title = TITLES.get(code, "Error")
    message = detail or MESSAGES.get(code, "")
    if wants_json():
        response = jsonify(error=title, detail=message)
        response.status_code = code
    else:
        template = "errors/_banner.html" if request.headers.get("HX-Request") else "errors/error.html"
        response = current_app.make_response((render_template(template, code=code, title=title, message=message), code))
    if code == 503:
        response.headers["Retry-After"] = "30"
    return response


def handle_http_error(error: HTTPException):
    if error.code is None or error.code < 400:
        return error
    response = error_response(error.code, error.description if error.code in (400, 409, 413, 422) else None)
    if error.code == 405 and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def handle_database_unavailable(error: DBAPIError):
    if isinstance(error, OperationalError) or error.connection_invalidated:
        current_app.logger.error("database unavailable: %s", error.__class__.__name__)
        db.session.rollback()
        # When loading the signed-in user was what failed, the error page must not try again
        # (Flask-Login keeps the request's user in g._login_user).
        g.setdefault("_login_user", login_manager.anonymous_user())
        return error_response(503)
    raise error


def handle_value_out_of_range(error: ValueOutOfRange):
    """A value a column cannot hold, caught before the database saw it; the message names the field."""
    db.session.rollback()
    return error_response(422, str(error))


def handle_data_error(error: DataError | OverflowError):
    """A value the boundary should have refused reached the database: a bug to fix, but the client's error.

    OverflowError is SQLite's way to refuse an integer beyond 64 bits.
    """
    db.session.rollback()
    cause = getattr(error, "orig", None) or error
    current_app.logger.error("bug: an unchecked value reached the database on %s %s: %s",
                             request.method, request.path, str(cause).splitlines()[0] if str(cause) else repr(cause))
    return error_response(400, "A value in the request cannot be stored (too long, out of range or malformed). "
                               "Nothing was saved.")


def handle_pool_exhausted(error: PoolTimeoutError):
    """Every pooled connection stayed busy for DATABASE_POOL_TIMEOUT_SECONDS."""
    current_app.logger.error("database pool exhausted: %s", error)
    g.setdefault("_login_user", login_manager.anonymous_user())
    return error_response(503)


def handle_concurrent_edit(error: StaleDataError):
    """Two writers raced on one row: the lock_version check refused the second one."""
    db.session.rollback()
    return error_response(409)


def handle_unexpected(error: Exception):
    current_app.logger.exception("unhandled error")
    return error_response(500)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(DBAPIError, handle_database_unavailable)
    app.register_error_handler(DataError, handle_data_error)
    app.register_error_handler(OverflowError, handle_data_error)
    app.register_error_handler(ValueOutOfRange, handle_value_out_of_range)
    app.register_error_handler(PoolTimeoutError, handle_pool_exhausted)
    app.register_error_handler(StaleDataError, handle_concurrent_edit)
    if not app.testing:
        app.register_error_handler(Exception, handle_unexpected)
