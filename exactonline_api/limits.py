"""Exact's call budget per division: read the headers, throttle ahead, stop in time.

Exact counts calls per (app, division): 60 per calendar minute and 5,000 per
UTC day by default, and says how many are left in six ``X-RateLimit-*``
headers on every division URL. A 429 carries only the headers of the limit
that was hit. We throttle before the minutely limit instead of provoking 429s,
and stop a division while a reserve of its daily calls is still untouched so
other apps of the same company keep working.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exactonline_api.errors import DailyBudgetExhausted

LOG = logging.getLogger("exactonline_api.limits")


@dataclass
class DivisionBudget:
    """What we know of one division's budget, and what this process spent."""

    division: int
    daily_limit: int | None = None
    daily_remaining: int | None = None
    daily_reset: float | None = None  # epoch seconds
    minutely_limit: int | None = None
    minutely_remaining: int | None = None
    minutely_reset: float | None = None
    calls: int = 0
    retries: int = 0
    waits: int = 0
    waited_seconds: float = 0.0
    status_counts: dict[int, int] = field(default_factory=dict)
    # While a call waits for the minute window: why, and until when (the limiter's clock).
    wait_reason: str | None = None
    wait_until: float | None = None

    def summary(self) -> dict:
        return {
            "division": self.division,
            "calls": self.calls,
            "retries": self.retries,
            "waits": self.waits,
            "waited_seconds": round(self.waited_seconds, 1),
            "minutely_remaining": self.minutely_remaining,
            "daily_remaining": self.daily_remaining,
            "daily_limit": self.daily_limit,
        }


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _epoch_seconds(headers: Mapping[str, str], name: str) -> float | None:
    value = _int(headers, name)
    return value / 1000.0 if value is not None else None


class RateLimiter:
    """Per-division budgets, shared by every request of the process."""

    def __init__(
        self,
        *,
        daily_reserve: int = 200,
        minutely_floor: int = 1,
        max_wait_seconds: float = 90.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.daily_reserve = daily_reserve
        self.minutely_floor = minutely_floor
        self.max_wait_seconds = max_wait_seconds
        self.clock = clock
        self.sleep = sleep
        self.budgets: dict[int, DivisionBudget] = {}

    def budget(self, division: int) -> DivisionBudget:
        budget = self.budgets.get(division)
        if budget is None:
            # setdefault: threads reading other divisions may add theirs at the same moment.
            budget = self.budgets.setdefault(division, DivisionBudget(division))
        return budget

    def daily_calls_left(self, division: int) -> int | None:
        """Calls we may still spend today on this division, reserve excluded."""
        budget = self.budget(division)
        if budget.daily_remaining is None:
            return None
        if budget.daily_reset is not None and self.clock() >= budget.daily_reset:
            return None  # a new day started; the next response tells the new figure
        return budget.daily_remaining - self.daily_reserve

    def before_call(self, division: int) -> None:
        """Refuse a call that would eat the reserve; wait out a spent minute."""
        left = self.daily_calls_left(division)
        if left is not None and left <= 0:
            raise DailyBudgetExhausted(
                f"division {division}: {self.budget(division).daily_remaining} daily calls left, "
                f"which is the reserve (daily_call_reserve={self.daily_reserve}); "
                "stopping here, the next run resumes from the saved state"
            )
        budget = self.budget(division)
        if (budget.minutely_remaining is not None and budget.minutely_reset is not None
                and budget.minutely_remaining <= self.minutely_floor):
            delay = budget.minutely_reset - self.clock()
            if delay > 0:
                self._wait(budget, delay, "minutely budget nearly spent")
            budget.minutely_remaining = None

    def after_call(self, division: int, headers: Mapping[str, str], status: int) -> None:
        budget = self.budget(division)
        budget.calls += 1
        budget.status_counts[status] = budget.status_counts.get(status, 0) + 1
        daily = _int(headers, "X-RateLimit-Remaining")
        if daily is not None:
            budget.daily_remaining = daily
            budget.daily_limit = _int(headers, "X-RateLimit-Limit") or budget.daily_limit
            budget.daily_reset = _epoch_seconds(headers, "X-RateLimit-Reset") or budget.daily_reset
        elif budget.daily_remaining is not None:
            budget.daily_remaining -= 1  # keep counting down when a response lacks the header
        minutely = _int(headers, "X-RateLimit-Minutely-Remaining")
        if minutely is not None:
            budget.minutely_remaining = minutely
            budget.minutely_limit = _int(headers, "X-RateLimit-Minutely-Limit") or budget.minutely_limit
            budget.minutely_reset = (_epoch_seconds(headers, "X-RateLimit-Minutely-Reset")
                                     or budget.minutely_reset)
        elif budget.minutely_remaining is not None:
            budget.minutely_remaining -= 1

    def after_429(self, division: int | None, headers: Mapping[str, str]) -> None:
        """Wait as long as the 429 says; give up at once when the day is spent."""
        budget = self.budget(division) if division is not None else DivisionBudget(0)
        if _int(headers, "X-RateLimit-Remaining") == 0:
            budget.daily_remaining = 0
            reset = _epoch_seconds(headers, "X-RateLimit-Reset")
            when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(reset)) if reset else "tomorrow"
            raise DailyBudgetExhausted(
                f"division {division}: Exact's daily limit is reached (resets {when}); "
                "stopping here, the next run resumes from the saved state"
            )
        reset = _epoch_seconds(headers, "X-RateLimit-Minutely-Reset")
        now = self.clock()
        if reset is not None and reset > now:
            delay = reset - now
        else:
            delay = 60.0 - (now % 60.0)  # no usable header: Exact's windows are calendar minutes
        budget.minutely_remaining = None
        self._wait(budget, delay, "HTTP 429")

    def _wait(self, budget: DivisionBudget, delay: float, reason: str) -> None:
        delay = min(max(delay, 0.0) + 0.05, self.max_wait_seconds)
        budget.waits += 1
        budget.waited_seconds += delay
        LOG.info("division %s: %s, waiting %.1f s for the next minute window",
                 budget.division, reason, delay)
        budget.wait_reason, budget.wait_until = reason, self.clock() + delay
        try:
            self.sleep(delay)
        finally:
            budget.wait_reason = budget.wait_until = None
