"""Time as Exact sees it: a settable clock and Amsterdam wall-clock encodings.

Exact writes ``Edm.DateTime`` as ``/Date(ms)/`` where ``ms`` is the Dutch
wall-clock time encoded as if it were UTC, and reads ``datetime'...'`` filter
literals in that same local time. Keeping every stored date as that "local ms"
number lets filters compare integers and lets rendering skip all conversion.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone

try:  # zoneinfo needs tz data; fall back to the EU rule so the sandbox starts anywhere.
    from zoneinfo import ZoneInfo

    _AMS = ZoneInfo("Europe/Amsterdam")
except Exception:  # pragma: no cover - only on hosts without tz data
    _AMS = None

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_MSDATE_RE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


class Clock:
    """Wall clock with an offset, so tests can jump ahead (30-day tokens, daily limits).

    Frozen, it stands still until advanced: tests that count calls per window
    then decide exactly which window each call lands in, however loaded the machine.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen_at: float | None = None
        self._lock = threading.Lock()

    def now(self) -> float:
        base = self._frozen_at if self._frozen_at is not None else time.time()
        return base + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def freeze(self, at: float | None = None) -> None:
        """Stop the clock, at ``at`` (epoch seconds) or at the current time."""
        with self._lock:
            now = self.now()
            self._frozen_at, self._offset = (now if at is None else at), 0.0

    def thaw(self) -> None:
        """Run on from the frozen time (the offset keeps it)."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at + self._offset - time.time()
                self._frozen_at = None

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    @property
    def offset(self) -> float:
        return self._offset


def _eu_offset_seconds(utc_seconds: float) -> int:
    """CET/CEST offset by the EU rule (last Sunday of March/October, 01:00 UTC)."""
    moment = _EPOCH + timedelta(seconds=utc_seconds)

    def last_sunday(month: int) -> datetime:
        day = datetime(moment.year, month + 1, 1, 1, tzinfo=timezone.utc) - timedelta(days=1)
        return day - timedelta(days=(day.weekday() + 1) % 7)

    return 7200 if last_sunday(3) <= moment < last_sunday(10) else 3600


def amsterdam_offset_seconds(utc_seconds: float) -> int:
    if _AMS is None:
        return _eu_offset_seconds(utc_seconds)
    offset = datetime.fromtimestamp(utc_seconds, _AMS).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def utc_to_local_ms(utc_seconds: float) -> int:
    """UTC epoch seconds -> Exact's local-as-UTC milliseconds."""
    return int(round((utc_seconds + amsterdam_offset_seconds(utc_seconds)) * 1000))


def ms_date(local_ms: int) -> str:
    return f"/Date({local_ms})/"


def ms_of(value: object) -> int | None:
    """Stored ``/Date(ms)/`` -> ms (None for anything else)."""
    if isinstance(value, str) and value.startswith("/Date("):
        match = _MSDATE_RE.match(value)
        return int(match.group(1)) if match else None
    return None


def naive_to_ms(text: str) -> int:
    """A naive ISO date-time (Exact local time) -> local ms. Raises ValueError."""
    match = _ISO_RE.match(text.strip())
    if not match or match.group(8):
        raise ValueError(text)
    return _parts_to_ms(match)


def _parts_to_ms(match: re.Match) -> int:
    year, month, day, hour, minute, second, frac = match.groups()[:7]
    moment = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
        tzinfo=timezone.utc,
    )
    ms = int((moment - _EPOCH).total_seconds()) * 1000
    if frac:
        ms += int(frac.ljust(3, "0")[:3])
    return ms


def input_to_ms(text: str, *, accept_msdate: bool) -> int:
    """A date-time from a request body -> local ms.

    Naive ISO strings are Exact local time; an explicit offset or ``Z`` is honoured
    by converting to Amsterdam time. ``/Date(ms)/`` only when the knob allows it.
    """
    if accept_msdate:
        ms = ms_of(text)
        if ms is not None:
            return ms
    match = _ISO_RE.match(text.strip())
    if not match:
        raise ValueError(text)
    ms = _parts_to_ms(match)
    zone = match.group(8)
    if not zone:
        return ms
    if zone == "Z":
        offset = 0
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    utc_seconds = ms / 1000 - offset
    return utc_to_local_ms(utc_seconds)


def exact_us_datetime(utc_seconds: float) -> str:
    """``10/11/2022 9:18:20 PM``: the format of Exact's token-expiry message."""
    moment = _EPOCH + timedelta(seconds=utc_seconds)
    hour12 = moment.hour % 12 or 12
    ampm = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour12}:{moment.minute:02d}:{moment.second:02d} {ampm}"

