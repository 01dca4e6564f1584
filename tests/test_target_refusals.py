"""Exact's refusals: a refused write is a rejected record in Exact's own words, never a halted run,
never an endpoint blocked for an hour (issue 14)."""

from __future__ import annotations

import pytest

from target_exactonline.target import RecordsRejected, TargetExactOnline
from tests.targetrun import api_calls, run_target, singer_text, target_config

SCHEMA = {"type": "SCHEMA", "schema": {"properties": {}}, "key_properties": []}
HOUR = 3600.0


def _records(stream: str, rows: list[dict], state: dict | None = None) -> str:
    lines = [{**SCHEMA, "stream": stream}] + [{"type": "RECORD", "stream": stream, "record": r} for r in rows]
    if state is not None:
        lines.append({"type": "STATE", "value": state})
    return singer_text(lines)


class Clock:
    """The error budget's clock: moved by the test, never the wall clock's luck."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def budget_clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(TargetExactOnline, "budget_clock", staticmethod(clock))
    return clock


def test_documents_refused_with_500_are_rejected_in_exacts_words_and_the_others_written_once(sandbox, tmp_path,
                                                                                             budget_clock):
    config = target_config(sandbox, tmp_path)
    division = sandbox.divisions[0]
    # Exact refuses the 3rd and 4th POST on a business rule: HTTP 500 with its JSON message.
    sandbox.faults({"kind": "refuse", "path": "documents/Documents", "method": "POST", "after": 2, "count": 2,
                    "message": "Verplicht: Serie"})
    docs = [{"Subject": f"Refusal test {i}", "Type": 20} for i in range(8)]
    result = run_target(config, _records("documents", docs, {"bookmarks": {"documents": 8}}))

    assert isinstance(result.error, RecordsRejected)
    assert str(result.error).startswith("2 records rejected (documents: 2); the reasons are in ")
    assert "Of the others: 6 created, 0 updated, 0 unchanged" in str(result.error)
    assert [(r["key"], r["reason"]) for r in result.rejects] == [
        ({"Subject": "Refusal test 2"}, "Exact refused it: Verplicht: Serie (HTTP 500)"),
        ({"Subject": "Refusal test 3"}, "Exact refused it: Verplicht: Serie (HTTP 500)"),
    ]
    subjects = sorted(d["Subject"] for d in sandbox.records(division, "documents/Documents")
                      if d["Subject"].startswith("Refusal test"))
    assert subjects == [f"Refusal test {i}" for i in (0, 1, 4, 5, 6, 7)]
    calls = [(c["method"], c["status"]) for c in api_calls(sandbox) if c["path"] == "documents/Documents"]
    # One lookup, eight POSTs: a refusal is final, never looked up or posted again.
    assert calls == [("GET", 200)] + [("POST", 201)] * 2 + [("POST", 500)] * 2 + [("POST", 201)] * 4
    assert result.states == [{"bookmarks": {"documents": 8}}]


def test_a_duplicate_code_is_posted_once_then_rejected_without_a_call_until_it_changes(sandbox, tmp_path,
                                                                                     budget_clock):
    config = target_config(sandbox, tmp_path, natural_keys={"accounts": ["Name"]})
    division = sandbox.divisions[0]
    sandbox.insert(division, "crm/Accounts", {"Code": "TAKEN1", "Name": "First owner BV"})
    rows = [{"Code": "TAKEN1", "Name": "Second owner BV"}, {"Code": "FREE01", "Name": "Free BV"}]

    first = run_target(config, _records("accounts", rows))
    assert first.summary["accounts"] == {"created": 1, "updated": 0, "unchanged": 0, "rejected": 1}
    assert first.rejects[0]["reason"] == "Exact refused it: Gegeven bestaat reeds. (HTTP 500)"

    sandbox.reset_log()
    second = run_target(target_config(sandbox, tmp_path, natural_keys={"accounts": ["Name"]}),
                        _records("accounts", rows))
    assert api_calls(sandbox) == []  # the refused one from the ledger's memory, the other unchanged
    assert second.rejects[0]["reason"].startswith("not sent again: unchanged since Exact refused it on ")
    assert "(Exact refused it: Gegeven bestaat reeds. (HTTP 500))" in second.rejects[0]["reason"]
    assert str(second.error).endswith("Of the others: 0 created, 0 updated, 1 unchanged. 1 of the rejected was "
                                      "not sent to Exact (see their reasons)")

    fixed = [{"Code": "TAKEN2", "Name": "Second owner BV"}, rows[1]]
    third = run_target(target_config(sandbox, tmp_path, natural_keys={"accounts": ["Name"]}),
                       _records("accounts", fixed))
    assert third.error is None, third.error
    assert third.summary["accounts"] == {"created": 1, "updated": 0, "unchanged": 1, "rejected": 0}
    posts = [c for c in api_calls(sandbox) if c["method"] == "POST"]
    assert [c["status"] for c in posts] == [201]


def test_refused_accounts_never_get_the_endpoint_blocked_and_the_valid_ones_land_when_the_budget_allows(
        sandbox_factory, tmp_path, budget_clock):
    # Refusals Exact counts toward its hourly limit (400), with tokens that outlive the test's hours.
    sandbox = sandbox_factory(business_refusal_status=400, access_token_lifetime=30 * 86400)
    division = sandbox.divisions[0]
    for i in range(15):
        sandbox.insert(division, "crm/Accounts", {"Code": f"DUP{i:02d}", "Name": f"Owner {i}"})
    refused = [{"Code": f"DUP{i:02d}", "Name": f"Copycat {i}"} for i in range(15)]
    valid = [{"Code": f"NEW{i:02d}", "Name": f"Newcomer {i}"} for i in range(5)]
    text = _records("accounts", refused + valid)

    def run() -> tuple:
        result = run_target(target_config(sandbox, tmp_path, natural_keys={"accounts": ["Name"]}), text)
        return result, {r["key"]["Name"]: r["reason"] for r in result.rejects}

    # Four runs within the hour: 5 refusals (the default budget of Exact's 10), then nothing is sent.
    _first, reasons = run()
    assert sum(r.startswith("Exact refused it: Gegeven bestaat reeds. (HTTP 400)") for r in reasons.values()) == 5
    held = [r for r in reasons.values() if r.startswith("not sent: Exact would block crm/Accounts for an hour; "
                                                        "retry after ")]
    assert len(held) == 15  # the other 10 refused and the 5 valid: never sent, and said so
    for _ in range(3):
        sandbox.advance(600)
        budget_clock.now += 600
        again, _reasons = run()
        assert again.summary["accounts"]["rejected"] == 20
    account_calls = [c for c in api_calls(sandbox) if c["path"] == "crm/Accounts"]
    assert len([c for c in account_calls if c["status"] == 400]) == 5
    assert not [c for c in account_calls if c["status"] == 403]  # never blocked
    assert sandbox.admin("GET", "/limits")["blocked"] == []

    # Each hour the budget allows five more; every refused record is sent once, every valid one lands.
    for _ in range(4):
        sandbox.advance(HOUR)
        budget_clock.now += HOUR
        last, _reasons = run()
    assert last.summary["accounts"]["rejected"] == 15
    assert {a["Name"] for a in sandbox.records(division, "crm/Accounts") if a["Name"].startswith("Newcomer")} == \
        {f"Newcomer {i}" for i in range(5)}
    posts = [c for c in api_calls(sandbox) if c["path"] == "crm/Accounts" and c["method"] == "POST"]
    assert [c["status"] for c in posts].count(400) == 15 and [c["status"] for c in posts].count(201) == 5
    assert not [c for c in api_calls(sandbox) if c["status"] == 403]


def test_keys_too_long_for_a_url_are_rejected_and_the_batch_lands(sandbox, tmp_path, budget_clock):
    config = target_config(sandbox, tmp_path)
    division = sandbox.divisions[0]
    rows = [{"Code": "LONG-OK1", "Name": "Fine BV"}, {"Code": "X" * 7000, "Name": "Too long BV"},
            {"Code": "漢" * 650, "Name": "CJK BV"}, {"Code": "LONG-OK2", "Name": "Also fine BV"}]
    result = run_target(config, _records("accounts", rows, {"bookmarks": {"accounts": 4}}))
    assert isinstance(result.error, RecordsRejected)  # exit 1, one line (test_target_cli)
    assert result.states == [{"bookmarks": {"accounts": 4}}]  # rejected, so accounted for: nothing is lost
    assert result.summary["accounts"] == {"created": 2, "updated": 0, "unchanged": 0, "rejected": 2}
    reasons = {r["record"]["Name"]: r["reason"] for r in result.rejects}
    assert reasons["Too long BV"].startswith("natural key Code is too long to look up in Exact (7")
    assert reasons["CJK BV"].startswith("natural key Code is too long to look up in Exact (")
    codes = {a["Code"].strip() for a in sandbox.records(division, "crm/Accounts")}
    assert {"LONG-OK1", "LONG-OK2"} <= codes


def test_a_division_not_granted_answers_403_with_its_reason_turned_into_advice(sandbox_factory, tmp_path):
    from exactonline_api.errors import ExactAPIError
    from exactonline_api.http import ExactSession
    from target_exactonline.target import TargetExactOnline as Target

    sandbox = sandbox_factory()
    granted = sandbox.divisions[:1]
    config = target_config(sandbox, tmp_path, refresh_token=sandbox.mint_refresh_token(divisions=granted))
    session: ExactSession = Target(config=config).session
    with pytest.raises(ExactAPIError) as caught:
        session.get_json(f"{sandbox.url}/api/v1/{sandbox.divisions[1]}/crm/Accounts?$select=ID")
    assert caught.value.refusal and caught.value.reason == "NoDivisionAccess"
    assert str(caught.value) == (
        f"Exact API crm/Accounts answered HTTP 403: division {sandbox.divisions[1]} is not granted to this app: "
        "run `tap-exactonline auth --config <your config.json>` again and tick it on Exact's consent screen")
    assert len([c for c in api_calls(sandbox) if c["division"] == sandbox.divisions[1]]) == 1  # never retried


def test_the_budget_the_target_spent_holds_the_tap_back_too(sandbox_factory, tmp_path):
    from tests.taprun import run_tap, tap_config

    sandbox = sandbox_factory(business_refusal_status=400)
    division = sandbox.divisions[0]
    for i in range(5):
        sandbox.insert(division, "crm/Accounts", {"Code": f"TB{i}", "Name": f"Owner {i}"})
    copies = [{"Code": f"TB{i}", "Name": f"Copy {i}"} for i in range(5)]
    target = run_target(target_config(sandbox, tmp_path, natural_keys={"accounts": ["Name"]}),
                        _records("accounts", copies))
    assert target.summary["accounts"]["rejected"] == 5
    sandbox.reset_log()
    # Same token store, so the same budget: the tap does not read crm/Accounts this hour.
    config = tap_config(sandbox, tmp_path, divisions=[division], api_overrides={"accounts": "standard"})
    out = run_tap(config, streams={"accounts"}, allow_error=True)
    assert "not sent: Exact would block crm/Accounts for an hour; retry after " in str(out.error)
    assert not [c for c in api_calls(sandbox) if c["path"] == "crm/Accounts"]
