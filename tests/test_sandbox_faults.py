"""Point 7: faults on demand, per path or at random with a seed."""

from __future__ import annotations

import json
import time

import pytest
import requests

DOCS = "documents/Documents"


@pytest.fixture
def api(sandbox, sandbox_client):
    return sandbox_client(sandbox)


def _get(api):
    return api.get(101, DOCS, {"$select": "ID"})


def test_latency_per_path(sandbox, api):
    sandbox.faults({"kind": "latency", "path": DOCS, "ms": 300})
    began = time.perf_counter()
    assert _get(api).status_code == 200
    assert time.perf_counter() - began >= 0.3
    assert api.get(101, "crm/Contacts", {"$select": "ID"}).status_code == 200
    # Whether a call was slowed shows in the request log, not in a wall-clock upper bound.
    (slow,) = sandbox.requests(path=DOCS)
    (fast,) = sandbox.requests(path="crm/Contacts")
    assert slow["fault"] == "latency" and slow["ms"] >= 300
    assert fast["fault"] is None


def test_5xx_burst_then_recovery(sandbox, api):
    sandbox.faults({"kind": "error", "path": DOCS, "count": 2, "status": 503})
    assert [_get(api).status_code for _ in range(3)] == [503, 503, 200]
    sandbox.faults({"kind": "error", "path": "sync/", "after": 1, "count": 1})
    params = {"$select": "ID", "$filter": "Timestamp gt 1L"}
    codes = [api.get(101, "sync/Documents/Documents", params).status_code for _ in range(3)]
    assert codes == [200, 500, 200]


def test_dropped_connection(sandbox, api):
    sandbox.faults({"kind": "drop", "path": DOCS, "count": 1})
    with pytest.raises(requests.ConnectionError):
        _get(api)
    assert _get(api).status_code == 200


def test_post_whose_response_is_lost_still_took_effect(sandbox, api):
    sandbox.faults({"kind": "drop_after", "path": DOCS, "method": "POST", "count": 1})
    with pytest.raises(requests.ConnectionError):
        api.post(101, DOCS, {"Subject": "lost answer", "Type": 20})
    subjects = [r["Subject"] for r in sandbox.records(101, DOCS)]
    assert subjects.count("lost answer") == 1
    assert api.post(101, DOCS, {"Subject": "second", "Type": 20}).status_code == 201


def test_malformed_page(sandbox, api):
    sandbox.faults({"kind": "malformed", "path": DOCS, "count": 1})
    broken = _get(api)
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.text)
    assert _get(api).json()["d"]["results"]


def test_timeout(sandbox, api):
    sandbox.faults({"kind": "timeout", "path": DOCS, "ms": 1000, "count": 1})
    with pytest.raises(requests.Timeout):
        api.get(101, DOCS, {"$select": "ID"}, timeout=0.2)


def test_token_endpoint_faults(sandbox):
    sandbox.faults({"kind": "drop_after", "path": "oauth2/token", "count": 1})
    refresh = sandbox.mint_refresh_token()
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret}
    with pytest.raises(requests.ConnectionError):
        requests.post(sandbox.url + "/api/oauth2/token", data=form)
    # The rotation happened although the answer was lost: the old token is now "old".
    assert requests.post(sandbox.url + "/api/oauth2/token", data=form).status_code == 401


def test_random_faults_are_seeded(sandbox_factory, sandbox_client):
    patterns = []
    for _ in range(2):
        handle = sandbox_factory(fault_seed=3, minutely_limit=1000,
                                 faults=[{"kind": "error", "probability": 0.3, "path": DOCS}])
        api = sandbox_client(handle)
        patterns.append([_get(api).status_code for _ in range(20)])
    assert patterns[0] == patterns[1] and 500 in patterns[0] and 200 in patterns[0]


def test_global_latency_knob_and_html_maintenance_page(sandbox, api):
    sandbox.set(latency_ms=150)
    began = time.perf_counter()
    _get(api)
    assert time.perf_counter() - began >= 0.15
    sandbox.set(latency_ms=0)
    sandbox.faults({"kind": "html", "count": 1})
    page = _get(api)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")


def test_bad_rules_are_refused(sandbox):
    with pytest.raises(RuntimeError):
        sandbox.faults({"kind": "explode"})
