"""Cron expressions and one-time moments as a client sends them: checked, bounded, explained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anchorline.cadence import Cron, parse_at, parse_cron
from anchorline.errors import BadInput

NOW = datetime(2026, 3, 28, 12, 0, 30, tzinfo=UTC)


def test_a_five_field_cron_fires_at_its_next_minute_in_its_time_zone() -> None:
    cron = parse_cron("0 9 * * MON-FRI", "Europe/Paris", min_interval_s=60, now=NOW)
    # Monday 30 March 2026, 09:00 in Paris (summer time since the 29th) is 07:00 UTC.
    assert cron.next_after(NOW) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_six_fields_put_the_seconds_first() -> None:
    cron = parse_cron("*/10 * * * * *", None, min_interval_s=1, now=NOW)
    assert cron.timezone == "UTC"
    assert cron.next_after(NOW) == NOW + timedelta(seconds=10)
    assert cron.latest_until(NOW + timedelta(seconds=10)) == NOW + timedelta(seconds=10)
    assert cron.shortest_gap_s() == 10


def test_the_shortest_gap_counts_the_step_over_midnight() -> None:
    assert Cron("0 0,23 * * *").shortest_gap_s() == 3600
    assert Cron("0,1 * * * *").shortest_gap_s() == 60
    assert Cron("@daily").shortest_gap_s() == 86_400


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * * *", "at most once every 120 s"),
        ("* * * * * *", "only 1 s apart"),
        ("0 0 30 2 *", "never fires"),
        ("H * * * *", "must have 5 fields"),
        ("* * *", "must have 5 fields"),
        ("61 * * * *", "must have 5 fields"),
        ("@reboot", "must have 5 fields"),
        ("* * * * * * *", "must have 5 fields"),
        ("0 0 * * *\x00", "must have 5 fields"),
        ("x" * 121, "1 to 120 characters"),
        ("", "1 to 120 characters"),
        (5, "1 to 120 characters"),
        (None, "1 to 120 characters"),
    ],
)
def test_a_bad_cron_is_refused_with_the_reason(expression: object, reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        parse_cron(expression, None, min_interval_s=120, now=NOW)


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", 3, "x" * 99]
)
def test_an_unknown_time_zone_is_refused(zone: object) -> None:
    with pytest.raises(BadInput, match="IANA time zone"):
        parse_cron("0 * * * *", zone, min_interval_s=60, now=NOW)


def test_a_one_time_moment_needs_an_offset_and_a_bounded_distance() -> None:
    assert parse_at("2026-03-28T13:00:00.123456+01:00", now=NOW, horizon_s=86_400) == datetime(
        2026, 3, 28, 12, 0, 0, 123000, tzinfo=UTC
    )
    for value, reason in [
        ("2026-03-28T13:00:00", "time zone offset"),
        ("tomorrow", "ISO 8601"),
        ("2027-03-28T13:00:00Z", "days ahead"),
        ("2026-03-28T10:00:00Z", "in the past"),
        ("0001-01-01T00:00:00+05:00", "out of range"),
        (17, "ISO 8601"),
    ]:
        with pytest.raises(BadInput, match=reason):
            parse_at(value, now=NOW, horizon_s=86_400)
