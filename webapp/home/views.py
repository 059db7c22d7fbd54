from flask import render_template
from flask_login import current_user

from webapp.accounts.access import login_required
from webapp.billing.alerts import current_alerts
from webapp.billing.services import live_subscription, plan_that_fits, usage_meters
from webapp.home import bp
from webapp.home.services import best_minion, checklist, running_jobs


@bp.get("/")
@login_required
def index():
    subscription = live_subscription(current_user)
    meters = usage_meters(current_user, subscription) if subscription else []
    return render_template(
        "home/index.html",
        subscription=subscription,
        meters=meters,
        fits=plan_that_fits(subscription, meters) if subscription else None,
        usage_alerts=current_alerts(current_user),
        jobs=running_jobs(current_user),
        minion=best_minion(current_user),
        steps=checklist(current_user),
    )
