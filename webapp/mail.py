"""The one mail path: an outbox in the console by default, SMTP when configured, kept in memory for tests.

``MAIL_BACKEND`` picks the backend: ``outbox`` (the default) keeps each message in the
``mail_outbox`` table, where staff with ``admin.access`` read it at /admin/mail_outbox/, and
prints it to the terminal; ``console`` only prints it; ``smtp`` sends through
``SMTP_HOST``/``SMTP_PORT`` (STARTTLS when ``SMTP_USE_TLS``, credentials from
``SMTP_USERNAME``/``SMTP_PASSWORD``); ``memory`` appends to :func:`outbox`.
Links in mail are built from ``BASE_URL``, never from the request's Host header.

Mail is sent off the request path: :func:`after_response` is the one place where work leaves
a request, to run once the response has been sent; outside a request (a Celery task, the CLI)
it runs at once.
"""
from __future__ import annotations

import smtplib
import sys
from collections.abc import Callable
from email.message import EmailMessage
from urllib.parse import urlsplit

from flask import Flask, current_app, has_request_context, render_template, request

from webapp.extensions import db

AFTER_RESPONSE_KEY = "minion_console.after_response"


def absolute_url(endpoint: str, **values) -> str:
    """A link for mail, on the configured BASE_URL whatever the request (or none) says."""
    base = urlsplit(current_app.config["BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)


def outbox(app: Flask) -> list[EmailMessage]:
    """The messages the ``memory`` backend has sent, oldest first."""
    return app.extensions.setdefault("mail_outbox", [])


def after_response(job: Callable[[], object]) -> None:
    """Run ``job`` in a fresh app context once the current response has been sent; at once outside a request.

    A failing job is logged: the response it would have changed is already gone.
    """
    if not has_request_context():
        job()
        return
    request.environ[AFTER_RESPONSE_KEY].append(job)


class RunAfterResponse:
    """WSGI middleware that runs the jobs :func:`after_response` queued once the response's last
    byte has been handed to the server, or when the server closes the response, whichever comes first.

    Not a ``call_on_close`` callback: werkzeug's development server (``minion-console``, the browser
    tests) reads what is left of the request before it closes the response, and that read can block
    for as long as the client keeps the connection open, so a close callback could run late or never.
    """

    def __init__(self, wsgi_app, app: Flask) -> None:
        self.wsgi_app, self.app = wsgi_app, app

    def __call__(self, environ, start_response):
        jobs = environ[AFTER_RESPONSE_KEY] = []
        return _ThenRun(self.wsgi_app(environ, start_response), lambda: _run_jobs(self.app, jobs))


class _ThenRun:
    """The response iterable, then ``then`` once: at the end of iteration or on close."""

    def __init__(self, body, then: Callable[[], None]) -> None:
        self.body, self.then = body, then

    def __iter__(self):
        yield from self.body
        self._finish()

    def close(self) -> None:
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self._finish()

    def _finish(self) -> None:
        then, self.then = self.then, None
        if then is not None:
            then()


def _run_jobs(app: Flask, jobs: list[Callable[[], object]]) -> None:
    if not jobs:
        return
    with app.app_context():
        for job in jobs:
            try:
                job()
            except Exception:
                app.logger.exception("work after the response failed")


def init_app(app: Flask) -> None:
    app.wsgi_app = RunAfterResponse(app.wsgi_app, app)


def compose(to: str, subject: str, template: str, **context) -> EmailMessage:
    """The message ``templates/mail/<template>.txt`` renders for ``to``."""
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message.set_content(render_template(f"mail/{template}.txt", **context))
    return message


def send_mail(to: str, subject: str, template: str, **context) -> EmailMessage:
    """Render ``templates/mail/<template>.txt`` now and deliver it to ``to`` after the response."""
    message = compose(to, subject, template, **context)
    after_response(lambda: deliver(message))
    return message


def deliver(message: EmailMessage) -> None:
    """Hand ``message`` to the configured backend; the outbox commits its row on its own."""
    backend = current_app.config["MAIL_BACKEND"]
    if backend == "smtp":
        send_smtp(message)
    elif backend == "memory":
        outbox(current_app).append(message)
    elif backend == "outbox":
        keep_in_outbox(message)
        db.session.commit()
        print_to_terminal(message)
    elif backend == "console":
        print_to_terminal(message)
    else:
        raise ValueError(f"unknown MAIL_BACKEND {backend!r}: use outbox, console, smtp or memory")


def keep_in_outbox(message: EmailMessage) -> None:
    """Add the message to the mail_outbox table (in the session's transaction)."""
    from webapp.system.models import OutboxMessage

    db.session.add(OutboxMessage(recipient=message["To"], subject=message["Subject"], body=message.get_content()))


def print_to_terminal(message: EmailMessage) -> None:
    """Straight to stdout: a logging configuration (Alembic's sets WARN) must not hide a newcomer's mail."""
    rule = "-" * 72
    print(f"{rule}\nMail to {message['To']}: {message['Subject']}\n\n{message.get_content().rstrip()}\n{rule}",
          file=sys.stdout, flush=True)


def send_smtp(message: EmailMessage) -> None:
    config = current_app.config
    with smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=30) as smtp:
        if config["SMTP_USE_TLS"]:
            smtp.starttls()
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
        smtp.send_message(message)
