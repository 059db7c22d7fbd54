"""Conditional GETs for polled fragments: an ETag from one cheap read, and a 304 without rendering.

A view hands over two functions: one that authorizes and reads the state its fragment shows
(one indexed query), and one that renders::

    def live_state(job_id):
        state = job_state(current_user, job_id)   # None: not the viewer's to see
        if state is None:
            abort(404)
        return state

    return conditional(lambda: live_state(job_id), lambda: render_template(...))

The ETag covers the state and everything else the rendering depends on: the deploy (templates
and version), the URL with its arguments, the HTMX headers that pick the fragment, the viewer
(user, session, permissions, time zone). Time itself is the caller's part of the state: a
fragment that shows "40 min" or "just now" puts that text, computed from the same read, into
its state, so the tag changes exactly when the text does.

Only fragments are answered conditionally. A full page also shows the navigation, the account
banners (email, billing) and flash messages, which no cheap read covers; it is always rendered.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any

from flask import Flask, current_app, make_response, request
from flask_login import current_user
from werkzeug.wrappers import Response

from webapp.htmx import is_htmx
from webapp.times import viewer_zone

# Browsers keep the fragment but ask each time (If-None-Match); nothing shared keeps a copy.
REVALIDATE = "private, no-cache"
# Request headers that choose what an HTMX answer holds (the leaderboard answers "load more" by target).
FRAGMENT_HEADERS = ("HX-Request", "HX-Target", "HX-History-Restore-Request")


def conditional(state: Callable[[], Iterable[Any]], render: Callable[[], Any], fragment: bool | None = None) -> Response:
    """A 304 when the client's ETag matches the tag of ``state()``; else ``render()`` with the tag attached.

    ``state`` runs first and refuses (aborts) a viewer who may not see the fragment, so a 304 is
    never an answer to them. ``fragment`` says whether the answer is a fragment (default: an HTMX
    request); a full page is rendered as usual, without a tag.
    """
    if not (is_htmx() if fragment is None else fragment):
        return make_response(render())
    tag = state_tag(state())
    if request.if_none_match.contains_weak(tag):
        response = current_app.response_class(status=304)
    else:
        response = make_response(render())
        if response.status_code != 200:
            return response
    response.set_etag(tag)
    response.headers["Cache-Control"] = REVALIDATE
    return response


def state_tag(state: Iterable[Any]) -> str:
    """The ETag of ``state`` as this viewer sees it at this URL, from this deploy."""
    # The session stands for the CSRF tokens that forms in a fragment carry: they derive from a secret
    # that lives as long as the signed-in session (WTF_CSRF_TIME_LIMIT is None; signing in starts a new one).
    viewer = (current_user.id, current_user.session_id, sorted(current_user.permission_codes()), str(viewer_zone())) \
        if current_user.is_authenticated else None
    parts = (deploy_salt(current_app), request.full_path, [request.headers.get(h) for h in FRAGMENT_HEADERS],
             viewer, list(state))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def deploy_salt(app: Flask) -> str:
    """A digest of the app's version and templates, so a deploy that changes a fragment changes every tag."""
    salt = app.extensions.get("conditional_salt")
    if salt is None:
        digest = hashlib.sha256(version("minion-console").encode())
        for folder, directories, files in sorted(os.walk(app.template_folder)):
            directories.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, app.template_folder).encode())
                with open(path, "rb") as template:
                    digest.update(template.read())
        salt = app.extensions["conditional_salt"] = digest.hexdigest()[:16]
    return salt
