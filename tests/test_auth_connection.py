"""The connection test (`tap-exactonline --test`) and the bearer authenticator."""

from __future__ import annotations

import time

import pytest
import requests

from exactonline_api.errors import ReauthorizationRequired
from exactonline_api.oauth import OAuthClient, TokenManager
from exactonline_api.tokens import FileTokenStore
from tap_exactonline.auth import ExactBearerAuth, connection_report
from tests.test_tokens_oauth import StubAdapter
from tests.tokens_support import FakeExact


def seeded_manager(sandbox, tmp_path, **kw) -> TokenManager:
    store = FileTokenStore(tmp_path / "tokens.json", client_id=sandbox.client_id)
    oauth = OAuthClient(sandbox.url, sandbox.client_id, sandbox.client_secret)
    return TokenManager(store, oauth, seed_refresh_token=sandbox.mint_refresh_token(), **kw)


def test_connection_report_names_user_division_and_budget_in_two_calls(sandbox, tmp_path):
    manager = seeded_manager(sandbox, tmp_path)
    manager.access_token()
    sandbox.reset_log()
    report = connection_report(sandbox.url, manager)
    lines = report.splitlines()
    assert lines[0].startswith(f"Connected to {sandbox.url} as ")
    assert lines[1] == f"Current division: {sandbox.divisions[0]}."
    assert lines[2].startswith("Daily API budget: ") and " of " in lines[2] and "calls left" in lines[2]
    calls = [(r["method"], r["path"], r["division"]) for r in sandbox.requests()]
    # The stored token sufficed (no token call); Me is free, the budget costs one division call.
    assert calls == [("GET", "current/Me", None), ("GET", "system/Divisions", sandbox.divisions[0])]


def test_connection_report_without_budget_check_makes_one_call(sandbox, tmp_path):
    manager = seeded_manager(sandbox, tmp_path)
    manager.access_token()
    sandbox.reset_log()
    report = connection_report(sandbox.url, manager, check_budget=False)
    assert "unknown until the first division call" in report
    assert [r["path"] for r in sandbox.requests()] == ["current/Me"]


def test_connection_report_with_a_dead_token_says_to_log_in(sandbox, tmp_path):
    manager = seeded_manager(sandbox, tmp_path)
    manager.access_token()
    sandbox.admin("POST", "/oauth/revoke", {})
    sandbox.admin("POST", "/oauth/expire-access", {})
    with pytest.raises(ReauthorizationRequired, match="tap-exactonline auth"):
        connection_report(sandbox.url, manager)


# -- ExactBearerAuth --------------------------------------------------------------------------------


def _manager(tmp_path) -> tuple[TokenManager, FakeExact]:
    fake = FakeExact()
    store = FileTokenStore(tmp_path / "t.json", client_id="c")
    with store.locked():
        store.write(fake.mint())
    fake.last_issue -= 600  # Exact allows the next refresh now
    return TokenManager(store, fake), fake


def test_bearer_auth_sets_the_header_and_retries_a_401_once_with_a_new_token(tmp_path):
    manager, fake = _manager(tmp_path)
    adapter = StubAdapter((401, "", {}), (200, {"d": {"results": []}}, {}))
    session = requests.Session()
    session.mount("https://", adapter)
    response = session.post("https://x/api/v1/1/crm/Accounts", json={"Name": "n"}, auth=ExactBearerAuth(manager))
    assert response.status_code == 200 and len(response.history) == 1
    first, second = (r.headers["Authorization"] for r in adapter.sent)
    assert first != second and second == f"Bearer {manager.access_token()}"
    assert adapter.sent[0].body == adapter.sent[1].body
    assert fake.calls == ["ok"]


def test_bearer_auth_does_not_loop_on_a_second_401(tmp_path):
    manager, fake = _manager(tmp_path)
    adapter = StubAdapter((401, "", {}), (401, "", {}))
    session = requests.Session()
    session.mount("https://", adapter)
    auth = ExactBearerAuth(manager)
    prepared = session.prepare_request(requests.Request("GET", "https://x/api/v1/current/Me", auth=auth))
    auth(prepared)  # singer-sdk applies the authenticator a second time; the hook must stay single
    assert len(prepared.hooks["response"]) == 1
    response = session.send(prepared)
    assert response.status_code == 401 and len(adapter.sent) == 2


def test_rotating_tokens_never_appear_in_a_report(sandbox, tmp_path):
    manager = seeded_manager(sandbox, tmp_path, margin_seconds=30)
    manager.access_token()
    time.sleep(0)
    tokens = manager.tokens()
    report = connection_report(sandbox.url, manager)
    assert tokens.access_token not in report and tokens.refresh_token not in report


def test_connection_report_through_the_tap_session_as_the_tap_calls_it(sandbox, tmp_path):
    from exactonline_api.http import ExactSession

    manager = seeded_manager(sandbox, tmp_path)
    report = connection_report(ExactSession(manager), sandbox.url)
    assert f"Current division: {sandbox.divisions[0]}." in report and "calls left" in report
