from flask import render_template
from flask_login import current_user

from webapp.accounts.access import login_required
from webapp.billing.services import live_subscription, plan_that_fits, usage_meters
from webapp.home import bp
from webapp.home.services import summary


@bp.get("/")
@login_required
def index():
    subscription = live_subscription(current_user)
    figures = summary(current_user, subscription)
    meters = usage_meters(current_user, subscription, usage=figures.usage) if subscription else []
    return render_template(
        "home/index.html",
        subscription=subscription,
        meters=meters,
        fits=plan_that_fits(subscription, meters) if subscription else None,
        usage_alerts=figures.usage_alerts,
        jobs=figures.jobs,
        minion=figures.minion,
        steps=figures.steps,
    )
