"""Point 4: minutely and daily limits per (client, division), their headers, and the hourly error limit."""

from __future__ import annotations

import time

MINUTELY = ("X-RateLimit-Minutely-Limit", "X-RateLimit-Minutely-Remaining", "X-RateLimit-Minutely-Reset")
DAILY = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _rate_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")}


def test_six_headers_on_division_urls_and_none_on_me(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    before = time.time()
    first = api.get(101, "documents/Documents", {"$select": "ID"})
    second = api.get(101, "documents/Documents", {"$select": "ID"})
    headers = _rate_headers(second)
    assert set(headers) == set(MINUTELY + DAILY)
    assert headers["X-RateLimit-Limit"] == "5000" and headers["X-RateLimit-Minutely-Limit"] == "60"
    assert int(_rate_headers(first)["X-RateLimit-Remaining"]) - int(headers["X-RateLimit-Remaining"]) == 1
    assert headers["X-RateLimit-Minutely-Remaining"] == "58"
    minute_reset, day_reset = int(headers["X-RateLimit-Minutely-Reset"]), int(headers["X-RateLimit-Reset"])
    assert minute_reset % 60_000 == 0 and 0 < minute_reset / 1000 - before <= 61  # next calendar minute, in ms
    assert day_reset % 86_400_000 == 0 and 0 < day_reset / 1000 - before <= 86_401  # next UTC midnight
    error = api.get(101, "documents/Documents", {"$select": "Nope"})
    assert error.status_code == 400 and set(_rate_headers(error)) == set(MINUTELY + DAILY)
    me = api.get(None, "current/Me")
    assert me.status_code == 200 and not _rate_headers(me)
    assert _rate_headers(api.get(101, "documents/Documents", {"$select": "ID"}))["X-RateLimit-Remaining"] == "4996"


def test_minutely_limit_429_with_only_minutely_headers(sandbox_factory, sandbox_client):
    handle = sandbox_factory(minutely_limit=3, access_token_lifetime=10**6)
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
    api = sandbox_client(handle)
    codes = [api.get(101, "documents/Documents", {"$select": "ID"}).status_code for _ in range(3)]
    assert 429 in codes
    time.sleep(1.05)
    assert api.get(101, "documents/Documents", {"$select": "ID"}).status_code == 200


def test_daily_limit_429_with_only_daily_headers(sandbox_factory, sandbox_client):
    handle = sandbox_factory(daily_limit=2, access_token_lifetime=10**6)
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
    one, two = sandbox_client(handle), sandbox_client(handle)
    for _ in range(2):
        one.get(101, "documents/Documents", {"$select": "ID"})
    # Same app (client id), different token: same budget, as at Exact.
    assert two.get(101, "documents/Documents", {"$select": "ID"}).status_code == 429


def test_hourly_error_limit_blocks_the_endpoint(sandbox_factory, sandbox_client):
    handle = sandbox_factory(error_limit=3, minutely_limit=1000, access_token_lifetime=10**6)
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
