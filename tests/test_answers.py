"""One classification of Exact's answers, the Reason advice and the error budget: unit tests with a
fake transport and a fake clock (milliseconds, no sandbox)."""

from __future__ import annotations

import io
import json

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter

from exactonline_api.budget import ErrorBudget, hourly_errors_setting
from exactonline_api.errors import ConfigError, ErrorBudgetSpent, ExactAPIError
from exactonline_api.http import ExactSession, WriteOutcomeUnknown
from tests.tokens_support import pg_url  # noqa: F401  (fixture)

BASE = "https://start.exactonline.nl/api/v1"
HTML = "<html><body><h1>Service Unavailable</h1></body></html>"


def exact_error(message: str) -> dict:
    return {"error": {"code": "", "message": {"lang": "", "value": message}}}


class Transport(BaseAdapter):
    """Answers each request with the next (status, body, headers); remembers what was sent."""

    def __init__(self, *answers) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[str] = []

    def send(self, request, **kwargs):
        self.sent.append(f"{request.method} {request.url}")
        status, body, *rest = self.answers.pop(0)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        response = requests.Response()
        response.status_code = status
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(data), preload_content=False, status=status)
        if not kwargs.get("stream"):
            response._content = data
        response.headers.update(rest[0] if rest else {})
        response.request, response.url = request, request.url
        return response

    def close(self) -> None:
        pass


class Tokens:
    def access_token(self) -> str:
        return "token"

    def access_token_after_401(self, rejected: str) -> str:
        return "token"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def session(*answers, budget: ErrorBudget | None = None) -> tuple[ExactSession, Transport]:
    transport = Transport(*answers)
    exact = ExactSession(Tokens(), max_retries=2, sleep=lambda s: None, error_budget=budget)
    exact.limiter.sleep = lambda s: None
    exact.mount("https://", transport)
    return exact, transport


def test_a_500_with_exacts_message_is_a_final_refusal_for_reads_and_writes():
    exact, transport = session((500, exact_error("Gegeven bestaat reeds.")),
                               (500, exact_error("Verplicht: Serie")))
    with pytest.raises(ExactAPIError) as read:
        exact.get(f"{BASE}/101/crm/Accounts?$select=ID")
    with pytest.raises(ExactAPIError) as write:
        exact.post(f"{BASE}/101/logistics/Items", json={"Code": "X"})
    assert read.value.refusal and read.value.status == 500
    assert str(read.value) == "Exact API crm/Accounts answered HTTP 500: Gegeven bestaat reeds."
    assert write.value.refusal and write.value.message_text == "Verplicht: Serie"
    assert len(transport.sent) == 2  # neither retried


def test_a_5xx_without_exacts_message_is_an_unknown_outcome():
    exact, transport = session((503, HTML), (502, ""), (500, HTML), (500, HTML))
    with pytest.raises(ExactAPIError) as read:
        exact.get(f"{BASE}/101/crm/Accounts?$select=ID")
    assert not read.value.refusal and read.value.status is None
    assert "HTTP 0" not in str(read.value) and "answered HTTP None" not in str(read.value)
    assert str(read.value).startswith("Exact API call: no usable answer (HTTP 500 on GET crm/Accounts); gave up "
                                      "after 2 retries")
    assert len(transport.sent) == 3
    with pytest.raises(WriteOutcomeUnknown):
        exact.post(f"{BASE}/101/crm/Accounts", json={"Code": "X"})


@pytest.mark.parametrize("reason,message,advice", [
    ("NoDivisionAccess", "Forbidden", "division 999 is not granted to this app: run `tap-exactonline auth"),
    ("", "Forbidden - Application Scope Violated. Cannot read crm/Accounts",
     "the app's scopes do not cover crm/Accounts (read): enable that scope for the app in Exact's App Center"),
    ("LicenseExpired", "Forbidden", "the Exact licence has expired: renew it in Exact Online"),
    ("BlockedUser", "Forbidden", "the Exact user of this connection is blocked: ask your Exact administrator"),
    ("SomethingNew", "Forbidden", "Exact refused it with Reason 'SomethingNew': Forbidden"),
])
def test_a_403_names_its_reason_and_what_to_do(reason, message, advice):
    exact, _ = session((403, exact_error(message), {"Reason": reason} if reason else {}))
    with pytest.raises(ExactAPIError) as caught:
        exact.get(f"{BASE}/999/crm/Accounts?$select=ID")
    assert caught.value.refusal and caught.value.reason == reason
    assert caught.value.message_text.startswith(advice)


def test_the_error_budget_counts_what_exact_counts_and_outlives_the_process(tmp_path):
    clock = Clock()
    path = tmp_path / "budget.json"
    budget = ErrorBudget(path, per_hour=3, clock=clock)
    budget.note(101, "crm/Accounts", 500)  # Exact does not count a 500
    budget.note(101, "crm/Accounts", 404)
    clock.now += 600
    budget.note(101, "crm/Accounts", 400)
    budget.note(102, "crm/Accounts", 400)  # another division: its own budget
    budget.check(101, "crm/Accounts")
    # Another run (the tap, the next target run) sees the same count.
    other = ErrorBudget(path, per_hour=3, clock=clock)
    other.note(101, "crm/Accounts", 403)
    with pytest.raises(ErrorBudgetSpent) as spent:
        budget.check(101, "crm/Accounts")
    # Free again when the oldest counted error is an hour old: 1_800_000_000 + 3600 is 09:00 UTC.
    assert spent.value.reason == "not sent: Exact would block crm/Accounts for an hour; retry after 09:00 UTC"
    other.check(102, "crm/Accounts")
    clock.now += 3000.5
    budget.check(101, "crm/Accounts")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_spent_budget_sends_nothing_and_a_damaged_file_starts_afresh(tmp_path, caplog):
    clock = Clock()
    path = tmp_path / "budget.json"
    budget = ErrorBudget(path, per_hour=1, clock=clock)
    exact, transport = session((400, exact_error("Bad Request - Error in query syntax.")), budget=budget)
    with pytest.raises(ExactAPIError):
        exact.get(f"{BASE}/101/crm/Accounts?$filter=x")
    with pytest.raises(ErrorBudgetSpent):
        exact.get(f"{BASE}/101/crm/Accounts?$filter=y")
    assert len(transport.sent) == 1
    path.write_bytes(b"\x00\xff not json")
    assert ErrorBudget(path, per_hour=1, clock=clock).retry_at(101, "crm/Accounts") is None
    assert "unreadable" in caplog.text


@pytest.mark.parametrize("value", [0, 10, "5", 2.5])
def test_the_budget_setting_leaves_exact_a_margin(value):
    with pytest.raises(ConfigError, match="hourly_error_budget"):
        hourly_errors_setting({"hourly_error_budget": value})
    assert hourly_errors_setting({}) == 5


def test_with_a_postgresql_token_store_the_budget_is_a_table_machines_share(pg_url, monkeypatch):  # noqa: F811
    from exactonline_api.budget import PostgresErrors

    monkeypatch.setattr(PostgresErrors, "CACHE_SECONDS", 0.0)  # as if seconds passed between the calls
    clock = Clock()
    config = {"token_store": pg_url, "client_id": "budget-test-client", "hourly_error_budget": 2}
    here, there = ErrorBudget.from_config(config, clock=clock), ErrorBudget.from_config(config, clock=clock)
    assert here.path is None
    here.note(101, "crm/Accounts", 400)
    there.note(101, "crm/Accounts", 404)
    for budget in (here, there):
        with pytest.raises(ErrorBudgetSpent):
            budget.check(101, "crm/Accounts")
    clock.now += 3600
    here.check(101, "crm/Accounts")


def test_exacts_block_spends_the_whole_budget_so_nothing_more_is_sent_for_an_hour(tmp_path):
    from exactonline_api.errors import EndpointBlocked

    budget = ErrorBudget(tmp_path / "budget.json", per_hour=5, clock=Clock())
    exact, transport = session((403, exact_error("The endpoint crm/Accounts is blocked for one hour because it "
                                                 "received more than 10 errors within one hour.")), budget=budget)
    with pytest.raises(EndpointBlocked):
        exact.get(f"{BASE}/101/crm/Accounts?$select=ID")
    with pytest.raises(ErrorBudgetSpent):
        exact.get(f"{BASE}/101/crm/Accounts?$select=ID")
    assert len(transport.sent) == 1
