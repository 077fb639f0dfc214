"""The plant's clock: which hour, day and shift a moment belongs to in a project's time zone.

Hour buckets are UTC hours. A day bucket is the moment (UTC) the plant's local day began; a
shift bucket the moment the running shift began, shift starts being local hours. Both follow
daylight saving time: a local day can last 23 or 25 hours, and so can a shift that spans
the change. In zones whose offset is not a whole hour (Asia/Kolkata, +05:30) an hour bucket
straddles a local hour: it counts in the local day and shift of the moment it starts.

The live verdict path and the rebuild both call these functions, so they cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

DEFAULT_SHIFT = {"name": "all", "start": 0}


@cache
def known_time_zones() -> frozenset[str]:
    """IANA names this host's tz database knows ("UTC" always)."""
    return frozenset(available_timezones()) | {"UTC"}


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def hour_bucket(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_bucket(moment: datetime, time_zone: str) -> datetime:
    """When the plant's local day holding ``moment`` began, in UTC."""
    tz = zone(time_zone)
    local = moment.astimezone(tz)
    return datetime.combine(local.date(), time.min, tzinfo=tz).astimezone(UTC)


def local_hour(moment: datetime, time_zone: str) -> int:
    return moment.astimezone(zone(time_zone)).hour


def _ordered(shifts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(shifts, key=lambda shift: int(shift["start"])) or [DEFAULT_SHIFT]


def shift_of_hour(shifts: list[dict[str, Any]], hour: int) -> str:
    """The shift running at local ``hour`` (0-23): the last one started by then, else the one
    that started the evening before."""
    ordered = _ordered(shifts)
    running = [shift for shift in ordered if int(shift["start"]) <= hour]
    return str((running or ordered)[-1]["name"])


def hours_into_shift(shifts: list[dict[str, Any]], hour: int) -> int:
    """How many clock hours before local ``hour`` the running shift began (0-23)."""
    starts = [int(shift["start"]) for shift in _ordered(shifts)]
    started = [start for start in starts if start <= hour]
    return hour - started[-1] if started else hour + 24 - starts[-1]


def shift_bucket(moment: datetime, shifts: list[dict[str, Any]], time_zone: str = "UTC") -> datetime:
    """When the shift running at ``moment`` began (UTC): the key of ``shift`` rows. Computed on
    the local wall clock, so a night shift across a daylight-saving change keeps one start."""
    tz = zone(time_zone)
    local = hour_bucket(moment).astimezone(tz)
    began = datetime.combine(local.date(), time(local.hour), tzinfo=tz) - timedelta(
        hours=hours_into_shift(shifts, local.hour)
    )
    # Aware arithmetic with one tzinfo is wall-clock arithmetic; zoneinfo resolves the offset.
    return began.astimezone(UTC)


def shift_day(shift_start: datetime, time_zone: str) -> datetime:
    """The day bucket a shift counts on: the local day it began."""
    return day_bucket(shift_start, time_zone)
