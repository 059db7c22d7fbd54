"""One way to show times: the viewer's zone, marked, inside <time datetime>."""
from datetime import datetime, timedelta, timezone

from webapp.times import ago, iso_utc, relative_text, when

MOMENT = datetime(2026, 12, 1, 8, 25, 42, 123456, tzinfo=timezone.utc)


def test_when_marks_the_zone_drops_microseconds_and_carries_iso_utc(app):
    with app.test_request_context():
        html = str(when(MOMENT))
        assert html == '<time datetime="2026-12-01T08:25:42+00:00">2026-12-01 08:25 UTC</time>'
        assert "08:25:42 UTC" in str(when(MOMENT, seconds=True))
        assert "never" in str(when(None))


def test_naive_values_from_sqlite_are_utc(app):
    with app.test_request_context():
        assert iso_utc(MOMENT.replace(tzinfo=None)) == "2026-12-01T08:25:42+00:00"


def test_relative_times_read_naturally_and_carry_the_absolute_time(app):
    assert relative_text(MOMENT, MOMENT + timedelta(seconds=30)) == "just now"
    assert relative_text(MOMENT, MOMENT + timedelta(minutes=12)) == "12 min ago"
    assert relative_text(MOMENT, MOMENT + timedelta(hours=3, minutes=5)) == "3 h ago"
    assert relative_text(MOMENT, MOMENT + timedelta(days=1, hours=2)) == "1 day ago"
    assert relative_text(MOMENT, MOMENT - timedelta(hours=4)) == "in 4 h"
    with app.test_request_context():
        assert 'title="2026-12-01 08:25 UTC"' in str(ago(MOMENT))
