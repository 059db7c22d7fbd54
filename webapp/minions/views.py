"""Minions: the leaderboard (one URL for the page, the refreshed board and each "load more" page), my minions and their pages."""
from __future__ import annotations

from flask import abort, flash, render_template, request, url_for
from flask_login import current_user

from sqlalchemy import select

from webapp.accounts.access import login_required
from webapp.accounts.models import User
from webapp.conditional import conditional
from webapp.extensions import db
from webapp.htmx import is_htmx, navigate, render_page_or_block
from webapp.minions import bp, ownership
from webapp.minions.forms import MinionCreateForm, MinionEditForm
from webapp.minions.models import Minion
from webapp.minions.ownership import MinionError
from webapp.minions.xp import xp_for_level
from webapp.minions.services import (
    WINDOWS, BoardFilters, avatar_color, board_state, initials, leaderboard_page,
)
from webapp.pagination import page_args
from webapp.support.panels import PANEL_ROWS, user_panel
# A module import: webapp.quotas reads minions' models, so it may be mid-import when this runs.
from webapp import quotas

LOAD_MORE_TARGET = "leaderboard-more"
bp.add_app_template_global(initials, "minion_initials")
bp.add_app_template_global(avatar_color, "minion_color")
# A refresh re-renders at most this many loaded pages (the rest come back with "load more").
MAX_REFRESH_PAGES = 10


def board_filters() -> BoardFilters:
    window = request.args.get("window", "all")
    return BoardFilters(
        window=window if window in WINDOWS else "all",
        model_id=request.args.get("model", type=int),
        provider_id=request.args.get("provider", type=int),
        query=request.args.get("q", "").strip()[:120],
    )


def board_args(filters: BoardFilters) -> dict[str, str | int]:
    """The filters as query-string arguments, leaving out the defaults so links stay short."""
    args = {"window": filters.window if filters.window != "all" else None, "model": filters.model_id,
            "provider": filters.provider_id, "q": filters.query or None}
    return {key: value for key, value in args.items() if value}


@bp.get("/leaderboard")
@login_required
def leaderboard():
    """The board from ``page`` through ``through``; "load more" asks for one page after it.

    Each "load more" answer also moves the 30 s refresh out of band to a URL that
    covers every page shown, so a refresh keeps the rows loaded so far. A refresh or
    "load more" that finds the board unchanged since the client's copy is a 304.
    """
    filters = board_filters()
    return conditional(lambda: board_state(filters), lambda: leaderboard_page_or_rows(filters))


def leaderboard_page_or_rows(filters: BoardFilters):
    page, per_page = page_args()
    args = board_args(filters)
    if "per_page" in request.args:
        args["per_page"] = per_page
    if is_htmx() and request.headers.get("HX-Target") == LOAD_MORE_TARGET:
        start = min(max(request.args.get("start", 1, type=int) or 1, 1), page)
        board = leaderboard_page(filters, page, per_page)
        return render_template(
            "minions/_leaderboard_rows.html", rows=board.rows, filters=filters,
            next_url=board.has_next and more_url(args, start, page + 1) or None,
            moved_poll_url=board_url(args, start, page),
        )
    through = min(max(request.args.get("through", page, type=int) or page, page), page + MAX_REFRESH_PAGES - 1)
    board = leaderboard_page(filters, page, per_page, pages=through - page + 1, viewer_id=current_user.id,
                             choices=not is_htmx())
    mine = board.mine
    return render_page_or_block(
        "minions/leaderboard.html", "leaderboard",
        rows=board.rows, filters=filters, windows=WINDOWS, page=page,
        next_url=more_url(args, page, through + 1) if board.has_next else None,
        mine=mine, models=board.models, providers=board.providers,
        poll_url=board_url(args, page, through),
        top_url=url_for("minions.leaderboard", **args),
        mine_url=mine and url_for(
            "minions.leaderboard", **{**args, "q": None}, page=(mine.position - 1) // per_page + 1,
            _anchor=f"minion-{mine.minion.id}",
        ),
    )


def board_url(args: dict, start: int, through: int) -> str:
    """The board from page ``start`` through page ``through``, as the refresh asks for it."""
    return url_for("minions.leaderboard", **args, page=start if start > 1 else None,
                   through=through if through > start else None)


def more_url(args: dict, start: int, page: int) -> str:
    """One more page for "load more", remembering the first page shown."""
    return url_for("minions.leaderboard", **args, page=page, start=start if start > 1 else None)


# --- a user's own minions ---------------------------------------------------------------------


def owned_or_404(minion_id: int) -> Minion:
    """The signed-in user's minion; anyone else's (staff included) is a 404 on these pages."""
    minion = ownership.owned_minion(current_user, minion_id)
    if minion is None:
        abort(404)
    return minion


def minion_list_page(form: MinionCreateForm | None = None, status: int = 200, notice: str | None = None):
    page, per_page = page_args()
    models = ownership.usable_models(current_user)
    if form is None:
        form = MinionCreateForm(formdata=None)
    form.set_models(models)
    return render_page_or_block(
        "minions/minion_list.html", "minions_panel", status=status,
        form=form, minions=ownership.owned_minions(current_user, page, per_page), notice=notice,
        page_url=lambda number: url_for("minions.minion_list", page=number),
    )


@bp.get("/minions")
@login_required
def minion_list():
    return minion_list_page()


@bp.post("/minions")
@login_required
def minion_create():
    form = MinionCreateForm()
    form.set_models(ownership.usable_models(current_user))
    if not form.validate_on_submit():
        return minion_list_page(form, 422)
    try:
        minion = ownership.create_minion(current_user, form.name.data, form.model_id.data, form.avatar_url.data)
        db.session.commit()
    except quotas.QuotaExceeded as error:
        db.session.rollback()
        return minion_list_page(form, 422, notice=str(error))
    except MinionError as error:
        db.session.rollback()
        getattr(form, error.field or "name").errors.append(str(error))
        return minion_list_page(form, error.status)
    flash(f"{minion.name} is ready.", "success")
    return navigate(url_for("minions.minion_detail", minion_id=minion.id))


@bp.get("/minions/<int:minion_id>")
@login_required
def minion_detail(minion_id: int):
    """The public page of any minion; its owner also sees its jobs and the controls."""
    page, per_page = page_args()
    details = ownership.minion_page(minion_id, current_user.id, page, per_page)
    if details is None:
        abort(404)
    minion = details.minion
    owner = minion.owner_user_id == current_user.id
    return render_page_or_block(
        "minions/minion_detail.html", "minion_jobs",
        minion=minion, owner=owner, standing=details.standing, history=details.history, lineage=details.lineage,
        level_start=xp_for_level(minion.level), next_level_xp=xp_for_level(minion.level + 1), jobs=details.jobs,
        edit_form=MinionEditForm(formdata=None, obj=minion) if owner else None,
        page_url=lambda number: url_for("minions.minion_detail", minion_id=minion.id, page=number),
    )


@bp.post("/minions/<int:minion_id>/edit")
@login_required
def minion_update(minion_id: int):
    minion = owned_or_404(minion_id)
    form = MinionEditForm()
    if form.validate_on_submit():
        try:
            ownership.rename_minion(minion, form.name.data, current_user)
            ownership.change_avatar(minion, form.avatar_url.data, current_user)
            db.session.commit()
        except MinionError as error:
            db.session.rollback()
            form.name.errors.append(str(error))
        else:
            flash("Your changes are saved.", "success")
            return navigate(url_for("minions.minion_detail", minion_id=minion.id))
    return render_page_or_block("minions/minion_edit.html", "edit_form", status=422, minion=minion, edit_form=form)


CONFIRMATIONS = {
    "archive": ("Archive {name}?", "It leaves the leaderboard and stops counting against your plan's minions "
                "(unless your plan counts archived ones). Its XP history and jobs are kept; you can restore it."),
    "delete": ("Delete {name} for good?", "Its XP history goes with it and cannot be brought back. Jobs that "
               "trained it stay in your job list. Archive it instead to keep its history."),
}


def minion_action(minion_id: int, action: str, change, done: str):
    """GET: the confirmation; POST: the change, audited, then back to the page (or the list after a delete)."""
    minion = owned_or_404(minion_id)
    if request.method == "GET":
        title, explanation = CONFIRMATIONS[action]
        confirm = {"title": title.format(name=minion.name), "text": explanation, "danger": action == "delete",
                   "action": url_for(f"minions.minion_{action}", minion_id=minion.id),
                   "button": f"{action.capitalize()} {minion.name}", "slot": "#minion-confirm-slot",
                   "cancel_url": url_for("minions.minion_detail", minion_id=minion.id)}
        return render_page_or_block("minions/minion_confirm.html", "confirm", confirm=confirm)
    name = minion.name
    try:
        change(minion, current_user)
        db.session.commit()
    except (MinionError, quotas.QuotaExceeded) as error:
        db.session.rollback()
        flash(str(error), "error")
        return navigate(url_for("minions.minion_detail", minion_id=minion_id))
    flash(done.format(name=name), "success")
    return navigate(url_for("minions.minion_list") if action == "delete"
                    else url_for("minions.minion_detail", minion_id=minion_id))


@bp.route("/minions/<int:minion_id>/archive", methods=["GET", "POST"])
@login_required
def minion_archive(minion_id: int):
    return minion_action(minion_id, "archive", ownership.archive_minion, "{name} is archived.")


@bp.post("/minions/<int:minion_id>/restore")
@login_required
def minion_restore(minion_id: int):
    return minion_action(minion_id, "restore", ownership.restore_minion, "{name} is back.")


@bp.route("/minions/<int:minion_id>/delete", methods=["GET", "POST"])
@login_required
def minion_delete(minion_id: int):
    return minion_action(minion_id, "delete", ownership.delete_minion, "{name} is deleted.")
@user_panel("minions/_support_panel.html", "users.read", order=20)
def support_minions_panel(user: User) -> dict:
    """The user's minions, strongest first, on the support user page."""
    return {"minions": db.session.scalars(
        select(Minion).where(Minion.owner_user_id == user.id)
        .order_by(Minion.xp.desc(), Minion.id).limit(PANEL_ROWS)).all()}
