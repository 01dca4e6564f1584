"""The rate limiter with a fake clock: budget bookkeeping, waits before and after 429s,
and the daily reserve. No server, no real sleeping."""

from __future__ import annotations

import pytest

from exactonline_api.errors import DailyBudgetExhausted
from exactonline_api.limits import RateLimiter
from tests.fakes import FakeClock

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a whole minute
DIVISION = 101


def headers(*, daily: int | None = None, minutely: int | None = None, minute_reset: float | None = None,
            day_reset: float = NOW + 57_600) -> dict[str, str]:
    """Exact's six headers (a 429 carries only those of the exhausted limit)."""
    out: dict[str, str] = {}
    if daily is not None:
        out |= {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": str(daily),
                "X-RateLimit-Reset": str(int(day_reset * 1000))}
    if minutely is not None:
        out |= {"X-RateLimit-Minutely-Limit": "60", "X-RateLimit-Minutely-Remaining": str(minutely),
                "X-RateLimit-Minutely-Reset": str(int((minute_reset or NOW + 60) * 1000))}
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def limiter(clock: FakeClock, **kwargs) -> RateLimiter:
    return RateLimiter(clock=clock.now, sleep=clock.sleep, **kwargs)


def test_budget_follows_the_headers_and_counts_down_without_them(clock):
    lim = limiter(clock, daily_reserve=200)
    assert lim.daily_calls_left(DIVISION) is None  # nothing known before the first answer
    lim.after_call(DIVISION, headers(daily=4321, minutely=55), 200)
    assert lim.daily_calls_left(DIVISION) == 4121
    lim.after_call(DIVISION, {}, 500)  # an answer without the headers still cost a call
    budget = lim.budget(DIVISION)
    assert (budget.daily_remaining, budget.minutely_remaining) == (4320, 54)
    assert budget.calls == 2 and budget.status_counts == {200: 1, 500: 1}
    assert lim.budget(102).calls == 0  # every division has its own budget


def test_daily_reserve_stops_before_the_call_that_would_eat_it(clock):
    lim = limiter(clock, daily_reserve=200)
    lim.after_call(DIVISION, headers(daily=201, minutely=50), 200)
    lim.before_call(DIVISION)  # one call left above the reserve
    lim.after_call(DIVISION, headers(daily=200, minutely=49), 200)
    with pytest.raises(DailyBudgetExhausted, match=r"division 101: 200 daily calls left.*daily_call_reserve=200"):
        lim.before_call(DIVISION)
    assert clock.sleeps == []


def test_a_new_day_forgets_yesterdays_figure(clock):
    lim = limiter(clock, daily_reserve=200)
    lim.after_call(DIVISION, headers(daily=150, day_reset=NOW + 30), 200)
    with pytest.raises(DailyBudgetExhausted):
        lim.before_call(DIVISION)
    clock.now_value = NOW + 30  # Exact's daily reset has passed
    assert lim.daily_calls_left(DIVISION) is None
    lim.before_call(DIVISION)  # allowed: the next answer tells the new figure


def test_waits_for_the_next_minute_when_the_minutely_budget_is_nearly_spent(clock):
    lim = limiter(clock, minutely_floor=1)
    lim.after_call(DIVISION, headers(daily=4000, minutely=2, minute_reset=NOW + 60), 200)
    lim.before_call(DIVISION)
    assert clock.sleeps == []  # two left: go on
    lim.after_call(DIVISION, headers(daily=3999, minutely=1, minute_reset=NOW + 60), 200)
    clock.now_value = NOW + 42
    lim.before_call(DIVISION)
    assert clock.sleeps == [pytest.approx(18.05)]  # until the reset, plus a margin
    lim.before_call(DIVISION)  # the new window is unknown until the next answer: no second wait
    assert len(clock.sleeps) == 1 and lim.budget(DIVISION).waits == 1


def test_429_waits_until_the_reset_it_names(clock):
    lim = limiter(clock)
    lim.after_429(DIVISION, headers(minutely=0, minute_reset=NOW + 60))
    assert clock.sleeps == [pytest.approx(60.05)]
    assert lim.budget(DIVISION).waited_seconds == pytest.approx(60.05)


def test_429_without_a_usable_reset_waits_for_the_next_calendar_minute(clock):
    lim = limiter(clock)
    clock.now_value = NOW + 45
    lim.after_429(DIVISION, {})
    clock.now_value = NOW + 125
    lim.after_429(DIVISION, headers(minutely=0, minute_reset=NOW + 60))  # a reset in the past
    assert clock.sleeps == [pytest.approx(15.05), pytest.approx(55.05)]


def test_each_wait_is_capped(clock):
    lim = limiter(clock, max_wait_seconds=5)
    lim.after_429(DIVISION, headers(minutely=0, minute_reset=NOW + 60))
    assert clock.sleeps == [5]


def test_daily_429_stops_at_once_naming_the_reset(clock):
    lim = limiter(clock)
    with pytest.raises(DailyBudgetExhausted, match=r"daily limit is reached \(resets 2027-01-16 00:00:00Z\)"):
        lim.after_429(DIVISION, headers(daily=0, day_reset=NOW + 57_600))
    assert clock.sleeps == [] and lim.budget(DIVISION).daily_remaining == 0
