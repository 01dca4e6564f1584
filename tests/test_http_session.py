"""The session's retry policy with a scripted transport and a fake clock: which answers
are retried, which are not, and how long it waits. Calls are counted at the transport."""

from __future__ import annotations

import pytest
import requests

from exactonline_api.errors import DailyBudgetExhausted, EndpointBlocked, ExactAPIError, ExactError
from exactonline_api.http import ExactSession, WriteOutcomeUnknown
from exactonline_api.limits import RateLimiter
from tests.fakes import FakeClock, FakeTokens, ScriptedTransport, exact_error, mounted, ok, status

URL = "https://start.exactonline.nl/api/v1/101/crm/Accounts?$select=ID"
GOOD = ok(b'{"d": {"results": [{"ID": 1}]}}')


def session(*script, max_retries: int = 6, tokens: FakeTokens | None = None):
    clock = FakeClock()
    transport = ScriptedTransport(*script)
    s = ExactSession(tokens or FakeTokens(), limiter=RateLimiter(clock=clock.now, sleep=clock.sleep),
                     max_retries=max_retries, backoff_base=0.5, backoff_cap=4.0, sleep=clock.sleep)
    calls = mounted(s, transport)
    return s, transport, clock, calls


@pytest.mark.parametrize("failure", [
    status(500), status(502), status(503, b"<html>maintenance</html>"),
    requests.exceptions.ConnectionError("reset by peer"), requests.exceptions.ReadTimeout("slow"),
    ok(b"<html>Exact Online is being updated</html>"),  # maintenance page with HTTP 200
    ok(b'{"d": {"results": [{"ID": 1}'),  # a page cut off mid-body
    ok(b"[]"),  # JSON, but no object
], ids=["500", "502", "503-html", "connection-reset", "read-timeout", "200-html", "200-truncated", "200-array"])
def test_a_get_is_retried_after_a_transient_failure(failure):
    s, _, clock, calls = session(failure, failure, GOOD)
    assert s.get_json(URL) == {"d": {"results": [{"ID": 1}]}}
    assert calls() == 3
    assert len(clock.sleeps) == 2 and all(0 <= d <= 4.0 for d in clock.sleeps)  # jittered, capped
    assert s.limiter.budget(101).retries == 2


def test_a_get_gives_up_after_max_retries_with_one_line():
    s, _, clock, calls = session(*[status(503)] * 4, max_retries=3)
    with pytest.raises(ExactAPIError, match=r"HTTP 503 on GET crm/Accounts\)?; gave up after 3 retries"):
        s.get(URL)
    assert calls() == 4 and len(clock.sleeps) == 3


@pytest.mark.parametrize("code", [400, 403, 404])
def test_client_errors_are_never_retried(code):
    # Exact blocks an endpoint for an hour after 10 of these: a retry would only add one more.
    s, _, clock, calls = session(exact_error(code, "Nope"))
    with pytest.raises(ExactError, match="Nope"):
        s.get(URL)
    assert calls() == 1 and clock.sleeps == []


def test_a_blocked_endpoint_says_so_and_is_not_retried():
    s, _, _, calls = session(exact_error(403, "Too many errors, this endpoint is blocked"))
    with pytest.raises(EndpointBlocked, match="crm/Accounts: Exact blocked this endpoint"):
        s.get(URL)
    assert calls() == 1


def test_401_is_retried_once_with_a_fresh_token():
    tokens = FakeTokens()
    s, transport, _, calls = session(status(401), GOOD, tokens=tokens)
    assert s.get(URL).status_code == 200
    assert [auth for _, _, auth in transport.seen] == ["Bearer token-1", "Bearer token-2"]
    assert tokens.after_401 == ["token-1"]


def test_a_second_401_ends_the_call():
    s, _, _, calls = session(status(401), status(401))
    with pytest.raises(ExactAPIError, match="refused the access token even after a refresh"):
        s.get(URL)
    assert calls() == 2


def test_429_waits_for_the_window_then_retries_without_counting_a_failure():
    clock_reset = str(int((1_800_000_000 + 60) * 1000))
    s, _, clock, calls = session(
        status(429, **{"X-RateLimit-Minutely-Remaining": "0", "X-RateLimit-Minutely-Reset": clock_reset}), GOOD,
        max_retries=0)
    assert s.get(URL).status_code == 200
    assert calls() == 2 and clock.sleeps == [pytest.approx(60.05)]


def test_a_daily_429_stops_without_a_retry():
    s, _, clock, calls = session(status(429, **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"}))
    with pytest.raises(DailyBudgetExhausted):
        s.get(URL)
    assert calls() == 1 and clock.sleeps == []


@pytest.mark.parametrize("failure", [status(500), status(503), requests.exceptions.ConnectionError("reset"),
                                     requests.exceptions.ReadTimeout("slow")],
                         ids=["500", "503", "connection-reset", "read-timeout"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_write_is_never_repeated_blindly(method, failure):
    # Only the caller can look up whether a write whose answer went wrong took effect.
    s, _, clock, calls = session(failure, GOOD)
    with pytest.raises(ExactError):
        s.request(method, URL.split("?")[0], json={"Name": "x"})
    assert calls() == 1 and clock.sleeps == []


def test_a_lost_write_answer_is_reported_as_unknown_outcome():
    s, _, _, _ = session(requests.exceptions.ConnectionError("reset"))
    with pytest.raises(WriteOutcomeUnknown, match="may or may not have been applied"):
        s.post(URL.split("?")[0], json={"Name": "x"})
