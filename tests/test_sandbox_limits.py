"""Point 4: minutely and daily limits per (client, division), their headers, and the hourly error limit."""

from __future__ import annotations

MINUTELY = ("X-RateLimit-Minutely-Limit", "X-RateLimit-Minutely-Remaining", "X-RateLimit-Minutely-Reset")
DAILY = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _rate_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")}


# The sandbox's clock frozen at 01:00:10 UTC: every call lands in a minute and a day the test
# knows, however slow the machine (a live clock can cross a minute between two calls).
FROZEN_AT = 1_800_000_000 - 1_800_000_000 % 86_400 + 3_600 + 10


def test_six_headers_on_division_urls_and_none_on_me(sandbox, sandbox_client):
    sandbox.freeze(FROZEN_AT)
    api = sandbox_client(sandbox)
    first = api.get(101, "documents/Documents", {"$select": "ID"})
    second = api.get(101, "documents/Documents", {"$select": "ID"})
    headers = _rate_headers(second)
    assert set(headers) == set(MINUTELY + DAILY)
    assert headers["X-RateLimit-Limit"] == "5000" and headers["X-RateLimit-Minutely-Limit"] == "60"
    assert int(_rate_headers(first)["X-RateLimit-Remaining"]) - int(headers["X-RateLimit-Remaining"]) == 1
    assert headers["X-RateLimit-Minutely-Remaining"] == "58"
    # Resets in epoch ms: the next calendar minute and the next UTC midnight.
    assert int(headers["X-RateLimit-Minutely-Reset"]) == (FROZEN_AT - 10 + 60) * 1000
    assert int(headers["X-RateLimit-Reset"]) == (FROZEN_AT - 3_610 + 86_400) * 1000
    error = api.get(101, "documents/Documents", {"$select": "Nope"})
    assert error.status_code == 400 and set(_rate_headers(error)) == set(MINUTELY + DAILY)
    me = api.get(None, "current/Me")
    assert me.status_code == 200 and not _rate_headers(me)
    assert _rate_headers(api.get(101, "documents/Documents", {"$select": "ID"}))["X-RateLimit-Remaining"] == "4996"


def test_minutely_limit_429_with_only_minutely_headers(sandbox_factory, sandbox_client):
    handle = sandbox_factory(minutely_limit=3, access_token_lifetime=10**6)
    handle.freeze(FROZEN_AT)
    api = sandbox_client(handle)
    statuses = [api.get(101, "documents/Documents", {"$select": "ID"}).status_code for _ in range(3)]
    refused = api.get(101, "documents/Documents", {"$select": "ID"})
    assert statuses == [200, 200, 200] and refused.status_code == 429
    assert refused.content == b""
    assert set(_rate_headers(refused)) == set(MINUTELY)
    assert _rate_headers(refused)["X-RateLimit-Minutely-Remaining"] == "0"
    # Another division has its own budget; Me is never limited.
    assert api.get(102, "documents/Documents", {"$select": "ID"}).status_code == 200
    assert api.get(None, "current/Me").status_code == 200
    handle.advance(60)
    assert api.get(101, "documents/Documents", {"$select": "ID"}).status_code == 200


def test_minutely_window_is_a_knob(sandbox_factory, sandbox_client):
    handle = sandbox_factory(minutely_limit=2, minutely_window_seconds=1)
    handle.freeze(FROZEN_AT)  # all three calls in one 1-second window, however slow the machine
    api = sandbox_client(handle)
    codes = [api.get(101, "documents/Documents", {"$select": "ID"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    refused = api.get(101, "documents/Documents", {"$select": "ID"})
    assert _rate_headers(refused)["X-RateLimit-Minutely-Reset"] == str((FROZEN_AT + 1) * 1000)
    handle.advance(1)
    assert api.get(101, "documents/Documents", {"$select": "ID"}).status_code == 200


def test_frozen_clock_stands_still_until_advanced_and_runs_on_when_thawed(sandbox):
    assert sandbox.freeze(FROZEN_AT) == FROZEN_AT
    assert sandbox.now() == FROZEN_AT
    sandbox.advance(90)
    assert sandbox.now() == FROZEN_AT + 90
    sandbox.thaw()
    assert FROZEN_AT + 90 <= sandbox.now() < FROZEN_AT + 90 + 3_600


def test_daily_limit_429_with_only_daily_headers(sandbox_factory, sandbox_client):
    handle = sandbox_factory(daily_limit=2, access_token_lifetime=10**6)
    handle.freeze(FROZEN_AT)
    api = sandbox_client(handle)
    for _ in range(2):
        assert api.get(101, "documents/Documents", {"$select": "ID"}).status_code == 200
    refused = api.get(101, "documents/Documents", {"$select": "ID"})
    assert refused.status_code == 429 and set(_rate_headers(refused)) == set(DAILY)
    assert _rate_headers(refused)["X-RateLimit-Remaining"] == "0"
    handle.advance(86400)
    assert api.get(101, "documents/Documents", {"$select": "ID"}).status_code == 200


def test_limits_are_per_client_and_division(sandbox_factory, sandbox_client):
    handle = sandbox_factory(minutely_limit=2)
    handle.freeze(FROZEN_AT)
    one, two = sandbox_client(handle), sandbox_client(handle)
    for _ in range(2):
        one.get(101, "documents/Documents", {"$select": "ID"})
    # Same app (client id), different token: same budget, as at Exact.
    assert two.get(101, "documents/Documents", {"$select": "ID"}).status_code == 429


def test_hourly_error_limit_blocks_the_endpoint(sandbox_factory, sandbox_client):
    handle = sandbox_factory(error_limit=3, minutely_limit=1000, access_token_lifetime=10**6)
    handle.freeze(FROZEN_AT)
    api = sandbox_client(handle)
    for _ in range(4):
        assert api.get(101, "crm/Accounts", {"$select": "ID"}).status_code == 400  # mandatory filter missing
    blocked = api.get(101, "crm/Accounts", {"$select": "ID", "$filter": "Name ne null"})
    assert blocked.status_code == 403 and "blocked" in blocked.json()["error"]["message"]["value"]
    assert api.get(101, "crm/Contacts", {"$select": "ID"}).status_code == 200  # other endpoints still work
    assert api.get(102, "crm/Accounts", {"$select": "ID", "$filter": "Name ne null"}).status_code == 200
    handle.advance(3601)
    assert api.get(101, "crm/Accounts", {"$select": "ID", "$filter": "Name ne null"}).status_code == 200
    assert handle.set(error_block_status=429)["error_block_status"] == 429
