"""What gunicorn serves during a benchmark: the console plus the two baselines.

- ``/bare/``: a plain Flask app returning a fixed string (the ceiling).
- ``/stock/``: a stock Flask-Admin ModelView over usage_records with no
  customisation (what an admin gets without our list views).
Both run in the same gunicorn workers as the console, so the ratios compare like with like.
"""
from __future__ import annotations

import gc
import os

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from webapp import create_app
from webapp.billing.models import UsageRecord
from webapp.extensions import db


def bare_app() -> Flask:
    app = Flask("bare")

    @app.get("/")
    def fixed_string():
        return "ok"

    return app


def stock_admin_app(database_uri: str) -> Flask:
    app = Flask("stock")
    app.config.update(SECRET_KEY=os.urandom(16).hex(), SQLALCHEMY_DATABASE_URI=database_uri)
    db.init_app(app)
    admin = Admin(app, name="Stock", url="/admin", endpoint="stock_admin")
    admin.add_view(ModelView(UsageRecord, db, endpoint="stock_usage_records"))
    return app


console = create_app()
application = DispatcherMiddleware(console, {
    "/bare": bare_app(),
    "/stock": stock_admin_app(console.config["SQLALCHEMY_DATABASE_URI"]),
})
gc.freeze()  # as app.py does, for all three apps alike
