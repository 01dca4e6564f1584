"""Exact's rate limits per (client, division) and the hourly error limit per endpoint.

Windows are fixed and aligned to the epoch, so the minutely window is a
calendar minute and the daily one ends at UTC midnight, matching the
``X-RateLimit-*-Reset`` values seen from Exact (epoch milliseconds).
"""

from __future__ import annotations

import threading
from collections import deque

from .knobs import Knobs
from .timeutil import Clock


class RateLimits:
    def __init__(self, knobs: Knobs, clock: Clock) -> None:
        self.knobs = knobs
        self.clock = clock
        self.lock = threading.Lock()
        self.windows: dict[tuple, list] = {}  # (client, division) -> [minute start, count, day start, count]
        self.errors: dict[tuple, deque] = {}
        self.blocked_until: dict[tuple, float] = {}

    def take(self, client: str, division: int) -> tuple[bool, list[tuple[str, str]]]:
        """Count one call. Returns (allowed, headers); a refusal carries only the exhausted limit's headers."""
        knobs = self.knobs
        now = self.clock.now()
        minute_len, day_len = float(knobs.minutely_window_seconds), float(knobs.daily_window_seconds)
        minute_start = now // minute_len * minute_len
        day_start = now // day_len * day_len
        with self.lock:
            state = self.windows.setdefault((client, division), [minute_start, 0, day_start, 0])
            if state[0] != minute_start:
                state[0], state[1] = minute_start, 0
            if state[2] != day_start:
                state[2], state[3] = day_start, 0
            daily = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
            minutely = ("X-RateLimit-Minutely-Limit", "X-RateLimit-Minutely-Remaining", "X-RateLimit-Minutely-Reset")
            day_reset = int((day_start + day_len) * 1000)
            minute_reset = int((minute_start + minute_len) * 1000)
            if state[3] >= knobs.daily_limit:
                return False, list(zip(daily, (str(knobs.daily_limit), "0", str(day_reset))))
            if state[1] >= knobs.minutely_limit:
                return False, list(zip(minutely, (str(knobs.minutely_limit), "0", str(minute_reset))))
            state[1] += 1
            state[3] += 1
            return True, (
                list(zip(daily, (str(knobs.daily_limit), str(knobs.daily_limit - state[3]), str(day_reset))))
                + list(zip(minutely, (str(knobs.minutely_limit), str(knobs.minutely_limit - state[1]),
                                      str(minute_reset))))
            )

    def record_error(self, client: str, division: int | None, endpoint: str) -> None:
        """A 400/401/403/404: past the limit within the window, the endpoint is blocked."""
        now = self.clock.now()
        key = (client, division, endpoint)
        with self.lock:
            times = self.errors.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - self.knobs.error_window_seconds:
                times.popleft()
            if len(times) > self.knobs.error_limit:
                self.blocked_until[key] = now + self.knobs.error_block_seconds

    def blocked(self, client: str, division: int | None, endpoint: str) -> bool:
        until = self.blocked_until.get((client, division, endpoint))
        return until is not None and until > self.clock.now()

    def reset(self) -> None:
        with self.lock:
            self.windows.clear()
            self.errors.clear()
            self.blocked_until.clear()

    def report(self) -> dict:
        with self.lock:
            return {
                "windows": [{"client": c, "division": d, "minutely_used": s[1], "daily_used": s[3]}
                            for (c, d), s in self.windows.items()],
                "blocked": [{"client": c, "division": d, "endpoint": e, "until": u}
                            for (c, d, e), u in self.blocked_until.items() if u > self.clock.now()],
            }
