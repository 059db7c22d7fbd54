from datetime import datetime, timedelta, timezone
from itertools import chain, repeat

import pytest
from sqlalchemy import func, select

from tests.factories import make_ai_model, make_minion, make_provider, make_training_job, make_user
from webapp.accounts.models import AuditEvent
from webapp.minions.models import MinionXpEvent
from webapp.minions.services import (
    BoardFilters, award_xp, board_state, leaderboard_page, repair_xp, window_start, xp_mismatches,
)
from webapp.minions.xp import level_for_xp


def ledger_sum(db_session, minion) -> int:
    return db_session.scalar(select(func.coalesce(func.sum(MinionXpEvent.delta), 0)).filter_by(minion_id=minion.id))


def test_award_xp_keeps_xp_equal_to_the_ledger(db_session):
    minion = make_minion(make_user(), xp=80)
    assert award_xp(minion, 50, "daily_challenge")
    assert minion.xp == 130 == ledger_sum(db_session, minion)
    assert minion.level == level_for_xp(130) == 2


def test_a_job_s_completion_is_awarded_once(db_session):
    owner = make_user()
    minion = make_minion(owner)
    job = make_training_job(owner, status="succeeded", minion=minion)
    assert award_xp(minion, 150, "training_job.succeeded", job)
    assert not award_xp(minion, 150, "training_job.succeeded", job)
    assert minion.xp == 150 == ledger_sum(db_session, minion)


def test_a_job_is_awarded_once_per_minion_and_reason(db_session):
    owner = make_user()
    minion, other = make_minion(owner), make_minion(owner)
    job = make_training_job(owner, status="succeeded", minion=minion)
    assert award_xp(minion, 150, "training_job.succeeded", job)
    assert award_xp(other, 40, "training_job.succeeded", job), "another minion's award for the same job"
    assert award_xp(minion, 25, "daily_challenge", job), "another reason for the same job"
    assert (minion.xp, other.xp) == (175, 40) == (ledger_sum(db_session, minion), ledger_sum(db_session, other))


def test_verify_finds_and_repairs_mismatches(db_session):
    good, bad = make_minion(make_user(), xp=100), make_minion(make_user(), xp=100)
    bad.xp = 999
    db_session.flush()
    mismatches = xp_mismatches()
    assert [(m.minion_id, m.xp, m.ledger) for m in mismatches] == [(bad.id, 999, 100)]
    repair_xp(mismatches)
    db_session.flush()
    assert bad.xp == 100 and bad.level == level_for_xp(100) and xp_mismatches() == []
    assert good.xp == 100


def test_verify_lists_each_mismatch_in_id_order_and_repair_audits_each(db_session):
    unlogged = make_minion(make_user(), name="Unlogged")
    inflated = make_minion(make_user(), name="Inflated", xp=100)
    untouched = make_minion(make_user(), name="Untouched")
    db_session.flush()
    # The older minion changes last, so only the query's ordering puts it first.
    inflated.xp = 999
    db_session.flush()
    unlogged.xp = 7
    db_session.flush()
    mismatches = xp_mismatches()
    assert [(m.minion_id, m.name, m.xp, m.ledger) for m in mismatches] == [
        (unlogged.id, "Unlogged", 7, 0), (inflated.id, "Inflated", 999, 100),
    ]
    repair_xp(mismatches)
    db_session.flush()
    assert (unlogged.xp, inflated.xp, untouched.xp) == (0, 100, 0)
    audited = db_session.execute(select(AuditEvent.object_type, AuditEvent.object_id, AuditEvent.changes).where(
        AuditEvent.action == "minion.xp_repair").order_by(AuditEvent.object_id)).all()
    assert [tuple(row) for row in audited] == [
        ("minions", unlogged.id, {"xp": [7, 0]}), ("minions", inflated.id, {"xp": [999, 100]}),
    ]


def test_rank_order_and_ties(db_session):
    model = make_ai_model()
    owner = make_user()
    first = make_minion(owner, model, xp=500)
    tie_older = make_minion(owner, model, xp=300)
    tie_newer = make_minion(owner, model, xp=300)
    last = make_minion(owner, model, xp=10)
    board = leaderboard_page(BoardFilters(model_id=model.id), 1, 10)
    assert [(row.minion.id, row.rank, row.position) for row in board.rows] == [
        (first.id, 1, 1), (tie_older.id, 2, 2), (tie_newer.id, 2, 3), (last.id, 4, 4),
    ]
    assert not board.has_next
    second_page = leaderboard_page(BoardFilters(model_id=model.id), 2, 2)
    assert [row.minion.id for row in second_page.rows] == [tie_newer.id, last.id] and not second_page.has_next


def test_the_search_keeps_the_real_rank(db_session):
    model = make_ai_model()
    make_minion(make_user(), model, xp=900, name="Alpha")
    needle = make_minion(make_user(), model, xp=100, name="Needle 50%")
    rows = leaderboard_page(BoardFilters(model_id=model.id, query="needle 50%"), 1, 10).rows
    assert [(row.minion.id, row.rank) for row in rows] == [(needle.id, 2)]
    assert leaderboard_page(BoardFilters(model_id=model.id, query="e_5"), 1, 10).rows == []


def test_the_provider_filter(db_session):
    from webapp.providers.models import Provider

    provider = Provider(slug="p-filter", name="P", default_base_url="https://p.test")
    db_session.add(provider)
    db_session.flush()
    hosted = make_minion(make_user(), make_ai_model(provider_id=provider.id), xp=5)
    make_minion(make_user(), make_ai_model(), xp=50)
    rows = leaderboard_page(BoardFilters(provider_id=provider.id), 1, 10).rows
    assert [row.minion.id for row in rows] == [hosted.id]


def earned_before(db_session, minion, delta: int, window: str = "week") -> None:
    """``delta`` XP ``minion`` earned the day before ``window``'s start: in its total and ledger, not the window."""
    before = window_start(window) - timedelta(days=1)
    db_session.add(MinionXpEvent(minion_id=minion.id, delta=delta, reason="quest.completed",
                                 created_at=before, updated_at=before))
    minion.xp += delta


@pytest.mark.parametrize("window", ["week", "month"])
def test_window_gains_equal_the_ledger_and_rank_the_board(db_session, window):
    model = make_ai_model()
    owner = make_user()
    steady, sprinter, idle = (make_minion(owner, model) for _ in range(3))
    start = window_start(window)
    for minion, delta in ((steady, 1000), (idle, 40)):
        earned_before(db_session, minion, delta, window)
    award_xp(steady, 20, "daily_challenge")
    award_xp(sprinter, 200, "quest.completed")
    award_xp(sprinter, 25, "daily_challenge")
    db_session.flush()
    rows = leaderboard_page(BoardFilters(window=window, model_id=model.id), 1, 10).rows
    assert [(row.minion.id, row.rank, row.gained) for row in rows] == [(sprinter.id, 1, 225), (steady.id, 2, 20)]
    for row in rows:
        in_window = db_session.scalar(
            select(func.sum(MinionXpEvent.delta)).where(MinionXpEvent.minion_id == row.minion.id,
                                                        MinionXpEvent.created_at >= start))
        assert row.gained == in_window


def test_window_starts():
    now = datetime(2026, 3, 19, 15, 30, tzinfo=timezone.utc)  # a Thursday
    assert window_start("week", now) == datetime(2026, 3, 16, tzinfo=timezone.utc)
    assert window_start("month", now) == datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert window_start("all", now) is None


def best_of(viewer_id: int, filters: BoardFilters):
    return leaderboard_page(filters, 1, 1, viewer_id=viewer_id).mine


def test_the_viewer_s_best_minion_on_the_board(db_session):
    model, other_model = make_ai_model(), make_ai_model()
    me = make_user()
    make_minion(make_user(), model, xp=900)
    make_minion(make_user(), model, xp=400)  # made first, so it is placed first among the 400s
    mine_low, mine_high = make_minion(me, model, xp=5), make_minion(me, model, xp=400)
    best = best_of(me.id, BoardFilters(model_id=model.id))
    assert (best.minion.id, best.rank, best.position, best.gained) == (mine_high.id, 2, 3, 400), \
        "tied for second, placed third"
    assert best_of(make_user().id, BoardFilters(model_id=model.id)) is None
    assert best_of(me.id, BoardFilters(model_id=model.id, query="no such name")).minion.id == mine_high.id, \
        "the name search narrows the rows, not the viewer's standing"

    mine_high.model_id = other_model.id
    db_session.flush()
    best = best_of(me.id, BoardFilters(model_id=model.id))
    assert (best.minion.id, best.rank, best.position, best.gained) == (mine_low.id, 3, 3, 5)
    assert best_of(me.id, BoardFilters(model_id=other_model.id)).minion.id == mine_high.id


def test_award_xp_rolls_up_the_week_and_month_gains(db_session):
    from webapp.minions.models import MinionXpGain

    def gains_column(column) -> dict:
        return dict(db_session.execute(
            select(MinionXpGain.period, column).where(MinionXpGain.minion_id == minion.id)
        ).all())

    minion = make_minion(make_user(), xp=40)
    first_filed = gains_column(MinionXpGain.updated_at)
    award_xp(minion, 25, "daily_challenge")
    assert gains_column(MinionXpGain.gained) == {"week": 65, "month": 65}
    assert all(filed > first_filed[period] for period, filed in gains_column(MinionXpGain.updated_at).items()), \
        "adding to a gain marks it updated"
    event = db_session.scalars(select(MinionXpEvent).filter_by(minion_id=minion.id, reason="daily_challenge")).one()
    assert event.created_at == event.updated_at, "one instant stamps the event and files its gains"
    for period in ("week", "month"):
        assert db_session.scalar(select(MinionXpGain.period_start).filter_by(minion_id=minion.id, period=period)) \
            == window_start(period, event.created_at) == window_start(period)


def test_a_deep_page_ranks_ties_like_rank_over_the_whole_board(db_session):
    model = make_ai_model()
    for xp in (50, 40, 40, 40, 30, 30, 20):
        make_minion(make_user(), model, xp=xp)
    everything = leaderboard_page(BoardFilters(model_id=model.id), 1, 10).rows
    for page in (2, 3, 4):
        rows = leaderboard_page(BoardFilters(model_id=model.id), page, 2).rows
        assert [(row.rank, row.position) for row in rows] == \
            [(row.rank, row.position) for row in everything[(page - 1) * 2:page * 2]]
    assert [row.rank for row in everything] == [1, 2, 2, 2, 5, 5, 7]


def test_an_award_at_the_turn_of_the_month_counts_in_the_week_and_month_of_its_event(db_session, monkeypatch):
    from webapp.minions import services
    from webapp.minions.models import MinionXpGain

    # The award's first read of the clock is the last instant of Sunday 31 May; every later read is June.
    readings = chain([datetime(2026, 5, 31, 23, 59, 59, 999999, timezone.utc)],
                     repeat(datetime(2026, 6, 1, 0, 0, 0, 1, timezone.utc)))
    minion = make_minion(make_user())
    monkeypatch.setattr(services, "utcnow", lambda: next(readings))
    award_xp(minion, 25, "daily_challenge")
    filed = dict(db_session.execute(
        select(MinionXpGain.period, MinionXpGain.period_start).where(MinionXpGain.minion_id == minion.id)
    ).all())
    assert filed == {"week": datetime(2026, 5, 25, tzinfo=timezone.utc), "month": datetime(2026, 5, 1, tzinfo=timezone.utc)}


def test_a_board_s_state_moves_with_its_window_s_start(db_session):
    # The week and month boards turn over at their window's start with no XP moving, so the poll's state carries it.
    assert [board_state(BoardFilters(window=window))[-1] for window in ("week", "month", "all")] == \
        [window_start("week"), window_start("month"), None]


def test_a_name_search_pages_its_matches_by_score_with_their_places_on_the_whole_board(db_session):
    model = make_ai_model()
    scouts = [make_minion(make_user(), model, name=f"Scout {xp}", xp=xp) for xp in (0, 20, 30, 40)]  # oldest lowest
    make_minion(make_user(), model, name="Other", xp=35)
    filters = BoardFilters(model_id=model.id, query="scout")

    def shown(page: int):
        board = leaderboard_page(filters, page, 2)
        return [(row.minion.id, row.rank, row.position, row.gained) for row in board.rows], board.has_next

    assert shown(1) == ([(scouts[3].id, 1, 1, 40), (scouts[2].id, 3, 3, 30)], True), "the best matches first"
    assert shown(2) == ([(scouts[1].id, 4, 4, 20), (scouts[0].id, 5, 5, 0)], False), "a minion without XP scores 0"


def test_on_a_week_board_the_viewer_s_place_counts_the_week_s_gains_not_all_time_xp(db_session):
    model, me = make_ai_model(), make_user()
    veteran, rising = make_minion(make_user(), model), make_minion(me, model)
    earned_before(db_session, veteran, 1000)
    award_xp(veteran, 10, "daily_challenge")
    award_xp(rising, 50, "quest.completed")
    db_session.flush()
    best = leaderboard_page(BoardFilters(window="week", model_id=model.id), 1, 10, viewer_id=me.id).mine
    assert (best.minion.id, best.rank, best.position, best.gained) == (rising.id, 1, 1, 50)


def test_the_filter_choices_are_read_only_when_asked_for_by_name_then_age(db_session):
    zeta, alpha = make_provider(name="Zeta Cloud"), make_provider(name="Alpha AI")
    zulu, able = make_ai_model(provider_id=zeta.id, name="Zulu"), make_ai_model(provider_id=alpha.id, name="Able")
    # Namesakes among others, so that the database's sort has rows to move (an input already in order stays).
    twins, same_name = [], []
    for _ in range(8):
        twins.append(make_provider(name="Twin Labs"))
        make_provider(name="Kappa AI")
        same_name.append(make_ai_model(name="Echo"))
        make_ai_model(name="Delta")
    retired = make_ai_model(name="Retired model", is_active=False)

    plain = leaderboard_page(BoardFilters(), 1, 10)
    assert (plain.models, plain.providers) == ([], []), "not read unless asked for"
    board = leaderboard_page(BoardFilters(), 1, 10, choices=True)
    providers = [row["id"] for row in board.providers]
    models = [row["id"] for row in board.models]
    assert [provider for provider in providers if provider in {zeta.id, alpha.id, *(twin.id for twin in twins)}] == \
        [alpha.id, *(twin.id for twin in twins), zeta.id]
    assert [model for model in models if model in {zulu.id, able.id, *(echo.id for echo in same_name)}] == \
        [able.id, *(echo.id for echo in same_name), zulu.id]
    assert retired.id not in models


def test_a_week_board_holds_this_week_s_gains_once_when_the_week_and_the_month_start_together(db_session, monkeypatch):
    from webapp.minions import services

    model = make_ai_model()
    minion = make_minion(make_user(), model, attributes={"color": "#12a4b6"})
    clock = [datetime(2026, 5, 27, 12, tzinfo=timezone.utc)]  # the week and the month before
    monkeypatch.setattr(services, "utcnow", lambda: clock[0])
    award_xp(minion, 70, "quest.completed")
    clock[0] = datetime(2026, 6, 3, 12, tzinfo=timezone.utc)  # Monday 1 June starts both the week and the month
    award_xp(minion, 30, "daily_challenge")
    for window in ("week", "month"):
        rows = leaderboard_page(BoardFilters(window=window, model_id=model.id), 1, 10).rows
        assert [(row.minion.id, row.gained, row.minion.color) for row in rows] == [(minion.id, 30, "#12a4b6")], window


def test_a_week_board_s_later_page_ranks_ties_by_the_week_s_gains(db_session):
    model = make_ai_model()
    tied = [make_minion(make_user(), model) for _ in range(3)]
    for minion, earlier in zip(tied, (100, 200, 300)):
        earned_before(db_session, minion, earlier)
        award_xp(minion, 50, "daily_challenge")
    db_session.flush()
    rows = leaderboard_page(BoardFilters(window="week", model_id=model.id), 2, 1).rows
    assert [(row.minion.id, row.rank, row.position, row.gained) for row in rows] == [(tied[1].id, 1, 2, 50)]


def test_a_page_starting_below_a_tie_ranks_like_rank_over_the_whole_board_when_older_minions_score_less(db_session):
    model = make_ai_model()
    for xp in (20, 30, 30, 40, 40, 40, 50):  # the older, the lower
        make_minion(make_user(), model, xp=xp)
    everything = leaderboard_page(BoardFilters(model_id=model.id), 1, 10).rows
    assert [(row.rank, row.gained) for row in everything] == [(1, 50), (2, 40), (2, 40), (2, 40), (5, 30), (5, 30),
                                                               (7, 20)]
    second = leaderboard_page(BoardFilters(model_id=model.id), 2, 3).rows
    assert [(row.minion.id, row.rank, row.position) for row in second] == \
        [(row.minion.id, row.rank, row.position) for row in everything[3:6]]


def test_each_job_earns_its_award_once_even_for_the_same_minion_and_reason(db_session):
    owner = make_user()
    minion = make_minion(owner)
    first, second = (make_training_job(owner, status="succeeded", minion=minion) for _ in range(2))
    assert award_xp(minion, 150, "training_job.succeeded", first)
    assert award_xp(minion, 150, "training_job.succeeded", second), "another job, another award"
    assert not award_xp(minion, 150, "training_job.succeeded", second)
    assert minion.xp == 300 == ledger_sum(db_session, minion)
