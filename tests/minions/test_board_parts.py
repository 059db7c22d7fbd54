"""The leaderboard's smaller parts with their values written out: avatars, windows, rollups, pages, recomputing XP."""
from datetime import datetime, timedelta, timezone

import webapp.models  # noqa: F401  (every model mapped, so a Minion can be built before any app exists)
from tests.factories import make_ai_model, make_minion, make_user
from webapp.minions.models import Minion
from webapp.minions.services import (
    DEFAULT_AVATAR_COLOR, BoardFilters, avatar_color, gains_from_events, initials, leaderboard_page, recompute_xp,
    window_start,
)


def minion_named(name: str, attributes=None) -> Minion:
    return Minion(name=name, attributes=attributes, xp=0)


def test_avatar_initials_come_from_up_to_two_words():
    assert initials(minion_named("grace brewster hopper")) == "GB"
    assert initials(minion_named("Cog")) == "C"
    assert initials(minion_named("   ")) == "?"


def test_only_a_hex_colour_reaches_the_avatar_style():
    assert avatar_color(minion_named("a", {"color": "#abc"})) == "#abc"
    assert avatar_color(minion_named("a", {"color": "#11223344"})) == "#11223344"
    for unsafe in ("red", "#12", "#abc; background:url(x)", 7):
        assert avatar_color(minion_named("a", {"color": unsafe})) == DEFAULT_AVATAR_COLOR
    assert avatar_color(minion_named("a", None)) == DEFAULT_AVATAR_COLOR


def test_windows_start_on_monday_and_on_the_first_at_midnight_utc():
    monday = datetime(2026, 3, 16, 0, 0, tzinfo=timezone.utc)
    assert window_start("week", monday) == monday
    assert window_start("week", datetime(2026, 3, 22, 23, 59, tzinfo=timezone.utc)) == monday
    assert window_start("month", datetime(2026, 3, 1, 0, 0, 1, tzinfo=timezone.utc)) == datetime(
        2026, 3, 1, tzinfo=timezone.utc)


def test_gains_from_events_add_up_per_minion_and_window():
    sunday = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    monday = sunday + timedelta(days=1)
    rows = gains_from_events([(1, 10, sunday), (1, 5, monday), (2, 7, monday), (1, 1, monday)])
    as_tuples = sorted((row["period"], row["period_start"].day, row["minion_id"], row["gained"]) for row in rows)
    assert as_tuples == [("month", 1, 1, 16), ("month", 1, 2, 7), ("week", 2, 1, 6), ("week", 2, 2, 7),
                         ("week", 23, 1, 10)]


def test_recompute_xp_reports_only_what_changed(db_session):
    minion = make_minion(make_user(), xp=250)
    assert recompute_xp(minion) == {}
    minion.xp, minion.level = 999, 9
    assert recompute_xp(minion) == {"xp": [999, 250], "level": [9, 2]}
    assert (minion.xp, minion.level) == (250, 2)
    unlogged = make_minion(make_user())
    unlogged.xp = 7
    assert recompute_xp(unlogged) == {"xp": [7, 0]}, "no XP events sum to 0"


def test_pages_of_the_board_say_whether_more_follow(db_session):
    model = make_ai_model()
    minions = [make_minion(make_user(), model, xp=xp) for xp in (50, 40, 30, 20, 10)]
    filters = BoardFilters(model_id=model.id)
    first = leaderboard_page(filters, 1, 2)
    assert [row.minion.id for row in first.rows] == [m.id for m in minions[:2]] and first.has_next
    both = leaderboard_page(filters, 2, 2, pages=2)
    assert [(row.minion.id, row.rank, row.position) for row in both.rows] == [
        (minions[2].id, 3, 3), (minions[3].id, 4, 4), (minions[4].id, 5, 5)]
    assert not both.has_next
    last = leaderboard_page(filters, 3, 2)
    assert [row.minion.id for row in last.rows] == [minions[4].id] and not last.has_next
