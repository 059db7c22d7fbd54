from flask import render_template
from flask_login import current_user

from webapp.accounts.access import login_required
from webapp.billing.services import live_subscription, usage_meters
from webapp.home import bp
from webapp.home.services import best_minion, checklist, running_jobs


@bp.get("/")
@login_required
def index():
    subscription = live_subscription(current_user)
    return render_template(
        "home/index.html",
        subscription=subscription,
        meters=usage_meters(current_user, subscription) if subscription else [],
        jobs=running_jobs(current_user),
        minion=best_minion(current_user),
        steps=checklist(current_user),
    )
