"""The one mail backend: logged to the console by default, SMTP when configured, kept in memory for tests.

``MAIL_BACKEND`` picks it: ``console`` (the default) logs each message, ``smtp`` sends
through ``SMTP_HOST``/``SMTP_PORT`` (STARTTLS when ``SMTP_USE_TLS``, credentials from
``SMTP_USERNAME``/``SMTP_PASSWORD``), ``memory`` appends to :func:`outbox`.
Links in mail are built from ``BASE_URL``, never from the request's Host header.
"""
from __future__ import annotations

import smtplib
from email.message import EmailMessage
from urllib.parse import urlsplit

from flask import Flask, current_app, render_template


def absolute_url(endpoint: str, **values) -> str:
    """A link for mail, on the configured BASE_URL whatever the request (or none) says."""
    base = urlsplit(current_app.config["BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)


def outbox(app: Flask) -> list[EmailMessage]:
    """The messages the ``memory`` backend has sent, oldest first."""
    return app.extensions.setdefault("mail_outbox", [])


def send_mail(to: str, subject: str, template: str, **context) -> EmailMessage:
    """Render ``templates/mail/<template>.txt`` and send it to ``to``."""
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message.set_content(render_template(f"mail/{template}.txt", **context))
    backend = current_app.config["MAIL_BACKEND"]
    if backend == "smtp":
        send_smtp(message)
    elif backend == "memory":
        outbox(current_app).append(message)
    elif backend == "console":
        current_app.logger.info("mail to %s: %s\n%s", to, subject, message.get_content())
    else:
        raise ValueError(f"unknown MAIL_BACKEND {backend!r}: use console, smtp or memory")
    return message


def send_smtp(message: EmailMessage) -> None:
    config = current_app.config
    with smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=30) as smtp:
        if config["SMTP_USE_TLS"]:
            smtp.starttls()
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
        smtp.send_message(message)
