"""Flask-Admin at /admin: a view for every table, grouped by domain, behind one permission check."""
from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from webapp.admin.base import details_url
from webapp.security import csp_nonce


def init_app(app: Flask) -> Admin:
    from webapp.admin import accounts, billing, catalog, minions, system, training
    from webapp.admin.home import AdminHomeView

    admin = Admin(
        app,
        name="Minion Console admin",
        url="/admin",
        index_view=AdminHomeView(name="Home", url="/admin", endpoint="admin"),
        theme=Bootstrap4Theme(base_template="admin/minion/base.html", fluid=True),
        csp_nonce_generator=csp_nonce,
    )
    for module in (accounts, billing, catalog, training, minions, system):
        admin.add_views(*module.views())
    # Pages below the admin link a record to its admin page when the viewer may open it.
    app.jinja_env.globals["record_url"] = details_url
    return admin
