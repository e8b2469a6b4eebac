"""When a schedule fires: a cron expression in a time zone, or one moment (`at`).

Both the gateway (checking a new schedule) and the scheduler (finding its next occurrence)
use this module, so a schedule the API accepted is one the scheduler can run.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterError, croniter

from anchorline.errors import BadInput

MAX_CRON = 120
# Fields of digits, names (MON, JAN, L, W), * / , - # ?; or one of cron's @ aliases.
CRON_RE = re.compile(
    r"[0-9A-Za-z*/,#?-]+(?: [0-9A-Za-z*/,#?-]+){4,5}"
    r"|@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)"
)
TIMEZONE_RE = re.compile(r"[A-Za-z0-9_+-]{1,32}(?:/[A-Za-z0-9_+-]{1,32}){0,2}")
DAY_S = 86_400
PAST_S = 3600  # an `at` this far back (a client's slow clock) still fires, at once


@dataclass(frozen=True)
class Cron:
    """A checked cron expression (5 fields, or 6 with seconds first) in an IANA time zone."""

    expression: str
    timezone: str = "UTC"

    def _iterator(self, start: datetime) -> croniter:
        local = start.astimezone(ZoneInfo(self.timezone))
        six = len(self.expression.split()) == 6
        return croniter(self.expression, local, ret_type=datetime, second_at_beginning=six)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment`, in UTC."""
        found: datetime = self._iterator(moment).get_next()
        return found.astimezone(UTC)

    def latest_until(self, moment: datetime) -> datetime:
        """The last occurrence at or before `moment`, in UTC."""
        found: datetime = self._iterator(moment + timedelta(microseconds=1)).get_prev()
        return found.astimezone(UTC)

    def shortest_gap_s(self) -> int:
        """The fewest seconds between two occurrences: from the times of day it fires at (the
        same every day it fires), counting the step over midnight as if every day did."""
        expanded = self._iterator(datetime.now(UTC)).expanded
        minutes, hours = _values(expanded[0], 60), _values(expanded[1], 24)
        seconds = _values(expanded[5], 60) if len(expanded) > 5 else [0]
        times = sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        return min([*gaps, DAY_S - times[-1] + times[0]])


def _values(field: list[int | str], size: int) -> list[int]:
    return list(range(size)) if "*" in field else [int(value) for value in field]


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(value: object) -> str:
    if value is None or value == "":
        return "UTC"
    if not isinstance(value, str) or not TIMEZONE_RE.fullmatch(value) or value not in _zones():
        raise BadInput("timezone must be an IANA time zone name such as UTC or Europe/Paris")
    return value


def parse_cron(
    expression: object, timezone: object, *, min_interval_s: float, now: datetime
) -> Cron:
    """A Cron from what a client sent, or BadInput saying why not: malformed, never firing, or
    firing more often than every `min_interval_s` seconds."""
    if not isinstance(expression, str) or not 1 <= len(expression) <= MAX_CRON:
        raise BadInput(f"cron must be a cron expression of 1 to {MAX_CRON} characters")
    expression = " ".join(expression.split())
    six = len(expression.split()) == 6
    if not CRON_RE.fullmatch(expression) or not croniter.is_valid(
        expression, second_at_beginning=six
    ):
        raise BadInput(
            "cron must have 5 fields (minute hour day-of-month month day-of-week), 6 with "
            "seconds first, or be an alias such as @hourly"
        )
    cron = Cron(expression, check_timezone(timezone))
    try:
        cron.next_after(now)
    except (CroniterError, ValueError, OverflowError) as exc:
        raise BadInput(f"cron {expression!r} never fires") from exc
    gap = cron.shortest_gap_s()
    if gap < min_interval_s:
        raise BadInput(
            f"cron {expression!r} fires only {gap} s apart at times; a schedule may fire at most "
            f"once every {min_interval_s:g} s"
        )
    return cron


def parse_at(value: object, *, now: datetime, horizon_s: float) -> datetime:
    """A one-time moment from an ISO 8601 timestamp with a UTC offset, within the horizon;
    to the millisecond, in UTC."""
    if not isinstance(value, str) or len(value) > 40:
        raise BadInput("at must be an ISO 8601 timestamp with a time zone offset")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInput("at must be an ISO 8601 timestamp with a time zone offset") from exc
    if moment.tzinfo is None:
        raise BadInput("at needs a time zone offset (Z or +HH:MM)")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError as exc:
        raise BadInput("at is out of range") from exc
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if moment > now + timedelta(seconds=horizon_s):
        raise BadInput(f"at is more than {horizon_s / DAY_S:g} days ahead")
    if moment < now - timedelta(seconds=PAST_S):
        raise BadInput("at is more than an hour in the past")
    return moment
