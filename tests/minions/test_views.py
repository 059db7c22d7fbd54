import re

from tests.conftest import login
from tests.factories import make_ai_model, make_minion, make_provider, make_user
from webapp.extensions import db
from webapp.minions.services import award_xp

HTMX = {"HX-Request": "true"}


def test_the_board_shows_rank_avatar_owner_level_and_model(client, db_session, me):
    model = make_ai_model(name="Tiny Llama")
    make_minion(me, model, xp=650, name="Quill Pen")
    html = client.get(f"/leaderboard?model={model.id}").get_data(as_text=True)
    assert "#1" in html and "QP" in html and "Me Myself" in html and "Tiny Llama" in html
    assert "<td>4</td>" in html  # level_for_xp(650)
    assert 'hx-trigger="every 30s"' in html and 'hx-push-url="true"' in html


def test_my_best_minion_links_to_its_page(client, db_session, me):
    model = make_ai_model()
    for xp in range(100, 0, -10):
        make_minion(make_user(), model, xp=xp)
    mine = make_minion(me, model, xp=5)
    html = client.get(f"/leaderboard?model={model.id}&per_page=4").get_data(as_text=True)
    assert "is ranked <strong>#11</strong>" in html
    link = re.search(r'href="([^"]+)">Show it on the board', html).group(1).replace("&amp;", "&")
    assert link.endswith(f"#minion-{mine.id}") and "page=3" in link and "per_page=4" in link


def test_the_filters_offer_the_active_models_and_every_provider(client, db_session, me):
    provider = make_provider(name="Zeta Cloud")
    active = make_ai_model(name="Active One", provider_id=provider.id)
    make_ai_model(name="Retired One", is_active=False)
    page = client.get("/leaderboard").get_data(as_text=True)
    models = re.search(r'<select id="board-model".*?</select>', page, re.S).group(0)
    assert f'<option value="{active.id}">Active One</option>' in models and "Retired One" not in models
    providers = re.search(r'<select id="board-provider".*?</select>', page, re.S).group(0)
    assert f'<option value="{provider.id}">Zeta Cloud</option>' in providers
    chosen = client.get(f"/leaderboard?provider={provider.id}").get_data(as_text=True)
    assert f'<option value="{provider.id}" selected>Zeta Cloud</option>' in chosen
    assert 'id="board-model"' not in client.get("/leaderboard", headers=HTMX).get_data(as_text=True)


def test_load_more_returns_rows_only_with_the_next_trigger(client, db_session, me):
    model = make_ai_model()
    for xp in range(10):
        make_minion(make_user(), model, xp=xp + 1)
    page = client.get(f"/leaderboard?model={model.id}&per_page=4").get_data(as_text=True)
    assert 'hx-trigger="revealed"' in page
    more = client.get(f"/leaderboard?model={model.id}&per_page=4&page=2",
                      headers={**HTMX, "HX-Target": "leaderboard-more"}).get_data(as_text=True)
    assert more.lstrip().startswith("<tr") and more.count('<tr id="minion-') == 4 and "revealed" in more
    last = client.get(f"/leaderboard?model={model.id}&per_page=4&page=3",
                      headers={**HTMX, "HX-Target": "leaderboard-more"}).get_data(as_text=True)
    assert last.count('<tr id="minion-') == 2 and "revealed" not in last


def test_the_refresh_keeps_the_filters(client, db_session, me):
    model = make_ai_model()
    fragment = client.get(f"/leaderboard?window=week&model={model.id}&q=ab", headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="leaderboard"')
    assert f'hx-get="/leaderboard?window=week&amp;model={model.id}&amp;q=ab"' in fragment


def test_the_board_and_a_deep_page_run_a_constant_number_of_queries(client, db_session, me, count_queries):
    model = make_ai_model()

    def add(count):
        for index in range(count):
            make_minion(make_user(), model, xp=index * 7)

    add(8)
    make_minion(me, model, xp=3)
    urls = [f"/leaderboard?model={model.id}&per_page=3", f"/leaderboard?model={model.id}&per_page=3&page=2",
            f"/leaderboard?model={model.id}&window=week&per_page=3"]
    small = []
    for url in urls:
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        small.append(counter.count)
    add(40)
    large = []
    for url in [urls[0], urls[1].replace("page=2", "page=12"), urls[2]]:
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        large.append(counter.count)
    assert large == small


def test_verify_xp_command(app, db_session):
    minion = make_minion(make_user(), xp=100)
    minion.xp = 7
    db_session.flush()
    runner = app.test_cli_runner()
    found = runner.invoke(args=["minions", "verify-xp"])
    assert found.exit_code == 1 and f"#{minion.id}" in found.output and "ledger 100" in found.output
    repaired = runner.invoke(args=["minions", "verify-xp", "--repair"])
    assert repaired.exit_code == 0 and "Repaired 1" in repaired.output
    db_session.expire_all()
    assert minion.xp == 100
    assert runner.invoke(args=["minions", "verify-xp"]).exit_code == 0


def test_load_more_moves_the_refresh_to_cover_every_loaded_page(client, db_session, me):
    model = make_ai_model()
    for xp in range(10):
        make_minion(make_user(), model, xp=xp + 1)
    more = client.get(f"/leaderboard?model={model.id}&per_page=3&page=2",
                      headers={**HTMX, "HX-Target": "leaderboard-more"}).get_data(as_text=True)
    poll = re.search(r'<template>\s*<div id="leaderboard-poll"[^>]*hx-swap-oob="true"', more).group(0)
    refresh = re.search(r'hx-get="([^"]+)"', poll).group(1).replace("&amp;", "&")
    assert "through=2" in refresh and "page=" not in refresh.replace("per_page=", "")
    assert "page=3" in re.search(r'id="leaderboard-more" hx-get="([^"]+)"', more).group(1)

    board = client.get(refresh, headers=HTMX).get_data(as_text=True)
    assert board.count('<tr id="minion-') == 6 and "<template>" not in board
    assert f'hx-get="/leaderboard?model={model.id}&amp;per_page=3&amp;page=3"' in board


def test_load_more_from_a_deep_page_keeps_its_first_page(client, db_session, me):
    model = make_ai_model()
    for xp in range(10):
        make_minion(make_user(), model, xp=xp + 1)
    board = client.get(f"/leaderboard?model={model.id}&per_page=2&page=2").get_data(as_text=True)
    next_url = re.search(r'id="leaderboard-more" hx-get="([^"]+)"', board).group(1).replace("&amp;", "&")
    assert "page=3" in next_url and "start=2" in next_url
    more = client.get(next_url, headers={**HTMX, "HX-Target": "leaderboard-more"}).get_data(as_text=True)
    refresh = re.search(r'id="leaderboard-poll" hidden hx-get="([^"]+)"', more).group(1).replace("&amp;", "&")
    assert "page=2" in refresh and "through=3" in refresh
    assert client.get(refresh, headers=HTMX).get_data(as_text=True).count('<tr id="minion-') == 4


def test_the_refresh_is_304_until_the_board_changes(app, client, db_session, me, count_queries):
    model = make_ai_model()
    minion = make_minion(make_user(), model, xp=40, name="Steady")
    url = f"/leaderboard?model={model.id}"
    first = client.get(url, headers=HTMX)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and first.headers["Cache-Control"] == "private, no-cache"
    with count_queries() as counter:
        unchanged = client.get(url, headers={**HTMX, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.get_data() == b"" and counter.count == 2
    # "Load more" on the same URL is another fragment, so it never takes the refresh's copy.
    more = client.get(url, headers={**HTMX, "HX-Target": "leaderboard-more", "If-None-Match": etag})
    assert more.status_code == 200

    award_xp(minion, 5, "bonus")
    scored = client.get(url, headers={**HTMX, "If-None-Match": etag})
    assert scored.status_code == 200 and "45" in scored.get_data(as_text=True)
    minion.name = "Renamed"
    db.session.flush()
    renamed = client.get(url, headers={**HTMX, "If-None-Match": scored.headers["ETag"]})
    assert renamed.status_code == 200 and "Renamed" in renamed.get_data(as_text=True)
    # Another viewer sees their own rank line: the owner's tag is never theirs.
    other = app.test_client()
    login(other, make_user())
    assert other.get(url, headers={**HTMX, "If-None-Match": renamed.headers["ETag"]}).status_code == 200
