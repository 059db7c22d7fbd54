"""The minion leaderboard: one URL for the page, the refreshed board and each "load more" page."""
from __future__ import annotations

from flask import render_template, request, url_for
from flask_login import current_user

from webapp.accounts.access import login_required
from webapp.htmx import is_htmx, render_page_or_block
from webapp.minions import bp
from webapp.minions.services import (
    WINDOWS, BoardFilters, best_rank_of, filter_choices, leaderboard_page,
)
from webapp.pagination import page_args

LOAD_MORE_TARGET = "leaderboard-more"


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
    filters = board_filters()
    page, per_page = page_args()
    rows, has_next = leaderboard_page(filters, page, per_page)
    args = board_args(filters)
    if "per_page" in request.args:
        args["per_page"] = per_page
    context = {
        "rows": rows, "filters": filters, "windows": WINDOWS, "page": page,
        "next_url": url_for("minions.leaderboard", **args, page=page + 1) if has_next else None,
    }
    if is_htmx() and request.headers.get("HX-Target") == LOAD_MORE_TARGET:
        return render_template("minions/_leaderboard_rows.html", **context)
    mine = best_rank_of(current_user.id, BoardFilters(filters.window, filters.model_id, filters.provider_id))
    models, providers = ([], []) if is_htmx() else filter_choices()
    return render_page_or_block(
        "minions/leaderboard.html", "leaderboard",
        **context, mine=mine, models=models, providers=providers,
        refresh_url=url_for("minions.leaderboard", **args, page=page if page > 1 else None),
        top_url=url_for("minions.leaderboard", **args),
        mine_url=mine and url_for(
            "minions.leaderboard", **{**args, "q": None}, page=(mine.position - 1) // per_page + 1,
            _anchor=f"minion-{mine.minion.id}",
        ),
    )
