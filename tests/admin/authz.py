"""Authorization matrix rows for every URL rule under /admin, generated from the registered views.

Only admins (admin.access plus each domain's permission) get in; support and plain users get 403.
Record URLs use an id that does not exist, so an admin's request changes nothing.
"""
from __future__ import annotations

from flask import current_app

from tests.authz import Route, World

ADMIN_ONLY = {"anonymous": "login", "user": 403, "support": 403, "admin": "ok"}
ADMIN_NOT_FOUND = {"anonymous": "login", "user": 403, "support": 403, "admin": 404}
MISSING = "999999999"


def view_routes(view) -> list[Route]:
    base = view.url
    lookup = next(iter(view._form_ajax_refs or {}), None)
    return [
        Route("GET", f"{base}/", f"{base}/", ADMIN_ONLY),
        Route("GET", f"{base}/new/", f"{base}/new/", ADMIN_ONLY),
        Route("POST", f"{base}/new/", f"{base}/new/", ADMIN_ONLY),
        Route("GET", f"{base}/edit/", f"{base}/edit/?id={MISSING}", ADMIN_ONLY),
        Route("POST", f"{base}/edit/", f"{base}/edit/?id={MISSING}", ADMIN_ONLY),
        Route("GET", f"{base}/details/", f"{base}/details/?id={MISSING}", ADMIN_ONLY),
        Route("GET", f"{base}/history/", f"{base}/history/?id={MISSING}", ADMIN_ONLY),
        Route("POST", f"{base}/delete/", f"{base}/delete/", ADMIN_ONLY, data={"id": MISSING}),
        Route("POST", f"{base}/action/", f"{base}/action/", ADMIN_ONLY, data={"action": "none"}),
        Route("GET", f"{base}/export/<export_type>/", f"{base}/export/csv/", ADMIN_ONLY),
        Route("GET", f"{base}/ajax/lookup/", f"{base}/ajax/lookup/?name={lookup}&query=a",
              ADMIN_ONLY if lookup else ADMIN_NOT_FOUND),
        Route("POST", f"{base}/ajax/update/", f"{base}/ajax/update/", ADMIN_NOT_FOUND,
              data={"list_form_pk": MISSING}),
    ]


def routes(world: World) -> list[Route]:
    from webapp.admin.base import SecureModelView

    rows = [
        Route("GET", "/admin/", "/admin/", ADMIN_ONLY),
        Route("GET", "/admin/alembic_revision/", "/admin/alembic_revision/", ADMIN_ONLY),
        Route("GET", "/admin/static/<path:filename>", "/admin/static/admin/js/helpers.js",
              {"anonymous": "ok", "user": "ok", "support": "ok", "admin": "ok"}),
    ]
    for view in current_app.extensions["admin"][0]._views:
        if isinstance(view, SecureModelView):
            rows += view_routes(view)
    return rows
