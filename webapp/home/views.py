from flask import render_template

from webapp.accounts.access import login_required
from webapp.home import bp


@bp.get("/")
@login_required
def index():
    return render_template("home/index.html")
