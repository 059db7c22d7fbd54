"""The minion leaderboard: one URL for the page, the refreshed board and each "load more" page."""
from __future__ import annotations

from flask import render_template, request, url_for
from flask_login import current_user

from sqlalchemy import select

from webapp.accounts.access import login_required
from webapp.accounts.models import User
from webapp.extensions import db
from webapp.htmx import is_htmx, render_page_or_block
from webapp.minions import bp
from webapp.minions.models import Minion
from webapp.minions.services import (
    WINDOWS, BoardFilters, best_rank_of, filter_choices, leaderboard_page,
)
from webapp.pagination import page_args
from webapp.support.panels import PANEL_ROWS, user_panel

LOAD_MORE_TARGET = "leaderboard-more"
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
    covers every page shown, so a refresh keeps the rows loaded so far.
    """
    filters = board_filters()
    page, per_page = page_args()
    args = board_args(filters)
    if "per_page" in request.args:
        args["per_page"] = per_page
    if is_htmx() and request.headers.get("HX-Target") == LOAD_MORE_TARGET:
        start = min(max(request.args.get("start", 1, type=int) or 1, 1), page)
        rows, has_next = leaderboard_page(filters, page, per_page)
        return render_template(
            "minions/_leaderboard_rows.html", rows=rows, filters=filters,
            next_url=has_next and more_url(args, start, page + 1) or None,
            moved_poll_url=board_url(args, start, page),
        )
    through = min(max(request.args.get("through", page, type=int) or page, page), page + MAX_REFRESH_PAGES - 1)
    rows, has_next = leaderboard_page(filters, page, per_page, pages=through - page + 1)
    mine = best_rank_of(current_user.id, BoardFilters(filters.window, filters.model_id, filters.provider_id))
    models, providers = ([], []) if is_htmx() else filter_choices()
    return render_page_or_block(
        "minions/leaderboard.html", "leaderboard",
        rows=rows, filters=filters, windows=WINDOWS, page=page,
        next_url=more_url(args, page, through + 1) if has_next else None,
        mine=mine, models=models, providers=providers,
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


@user_panel("minions/_support_panel.html", "users.read", order=20)
def support_minions_panel(user: User) -> dict:
    """The user's minions, strongest first, on the support user page."""
    return {"minions": db.session.scalars(
        select(Minion).where(Minion.owner_user_id == user.id)
        .order_by(Minion.xp.desc(), Minion.id).limit(PANEL_ROWS)).all()}
