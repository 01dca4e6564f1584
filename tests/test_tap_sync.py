"""tap-exactonline against the sandbox: counts, pages, incremental, call budget."""

from __future__ import annotations

from datetime import date

import jsonschema
import pytest

from tap_exactonline.tap import TapExactOnline
from tests.taprun import catalog_selecting, run_tap, tap_config, upsert

pytestmark = pytest.mark.slow  # full tap runs against the sandbox, several per test

TL = "sync/Financial/TransactionLines"


def api_calls(sandbox, **filters) -> list[dict]:
    return [r for r in sandbox.requests(**filters) if not r["path"].startswith("oauth2")]


def test_every_stream_discovers_with_a_valid_schema():
    tap = TapExactOnline(config={"client_id": "x", "client_secret": "y"}, validate_config=False)
    assert len(tap.streams) > 250
    for name, stream in tap.streams.items():
        jsonschema.Draft7Validator.check_schema(stream.schema)
        assert set(stream.primary_keys) <= set(stream.schema["properties"]), name
        assert "Division" in stream.primary_keys, name
        if stream.replication_key:
            assert stream.replication_key in stream.schema["properties"], name


@pytest.fixture
def big(sandbox_factory):
    # More than one page for each kind: 1,000-row sync/bulk pages, 60-row standard pages.
    return sandbox_factory(volumes={"transaction_lines": 2345, "cashflow/Receivables": 1500,
                                    "financial/Journals": 130, "purchaseentry/PurchaseEntries": 70,
                                    "purchaseentry/PurchaseEntryLines": 150})


@pytest.mark.parametrize(("stream", "path"), [
    ("transaction_lines", TL),                          # sync
    ("receivables", "cashflow/Receivables"),            # bulk
    ("journals", "financial/Journals"),                 # standard
    ("purchase_entry_lines", "purchaseentry/PurchaseEntryLines"),  # through the parent
])
def test_each_kind_syncs_every_row_across_pages(big, tmp_path, stream, path):
    config = tap_config(big, tmp_path)
    out = run_tap(config, streams={stream})
    for division in big.divisions:
        source = big.records(division, path)
        got = [r for r in out.records[stream] if r["Division"] == division]
        key = out_key(stream)
        assert len(got) == len(source)
        assert {r[key] for r in got} == {r[key] for r in source}
    calls = api_calls(big, method="GET")
    assert calls, "the sync made no API calls"
    assert all(c["status"] == 200 for c in calls)


def out_key(stream: str) -> str:
    from exactonline_api.registry import entities

    return entities()[stream].key[0]


def test_sync_pages_cost_ceil_rows_over_1000(big, tmp_path):
    config = tap_config(big, tmp_path, divisions=[big.divisions[0]])
    big.reset_log()
    out = run_tap(config, streams={"transaction_lines"})
    rows = len(out.records["transaction_lines"])
    pages = [c for c in api_calls(big) if c["path"] == TL]
    assert len(pages) == -(-rows // 1000)
    # the $select carries exactly the selected properties
    assert pages[0]["query"]["$select"]


def test_unselected_streams_make_no_calls(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path)
    sandbox.reset_log()
    out = run_tap(config, streams=set())
    assert not out.records
    assert api_calls(sandbox) == []


def test_select_follows_the_selected_properties(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path, divisions=[sandbox.divisions[0]])
    catalog = catalog_selecting(config, {"gl_accounts"}, {"gl_accounts": {"ID", "Code", "Description"}})
    sandbox.reset_log()
    out = run_tap(config, catalog=catalog)
    query = next(c["query"] for c in api_calls(sandbox) if c["path"] == "sync/Financial/GLAccounts")
    selected = query["$select"].split(",")
    assert set(selected) == {"ID", "Code", "Description", "Division", "Timestamp"}
    assert out.records["gl_accounts"]
    assert set(out.records["gl_accounts"][0]) <= {"ID", "Code", "Description", "Division", "Timestamp"}


def test_incremental_returns_exactly_the_changed_rows(sandbox, tmp_path):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    first = run_tap(config, streams={"accounts", "journals"})
    accounts = sandbox.records(division, "crm/Accounts")
    changed = accounts[0]["ID"]
    sandbox.update(division, "crm/Accounts", changed, Name="Renamed B.V.")
    added = sandbox.insert(division, "crm/Accounts", {"Name": "New Customer B.V.", "Code": "NEW01"})[0]
    sandbox.reset_log()
    second = run_tap(config, streams={"accounts", "journals"}, state=first.state)
    got = second.records["accounts"]
    assert sorted(r["ID"] for r in got) == sorted([changed, added["ID"]])
    assert next(r for r in got if r["ID"] == changed)["Name"] == "Renamed B.V."
    assert second.records.get("journals", []) == []


def test_incremental_run_without_changes_costs_one_call_per_stream(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path)
    streams = {"transaction_lines", "gl_accounts", "accounts", "journals", "receivables"}
    first = run_tap(config, streams=streams)
    sandbox.reset_log()
    second = run_tap(config, streams=streams, state=first.state)
    assert sum(len(v) for v in second.records.values()) == 0
    calls = api_calls(sandbox)
    # one call per stream per division, plus at most one sync/Deleted read per division,
    # plus one system/Divisions read per run (granted divisions and the division-move check), after
    # current/Me, which has no division and costs nothing at Exact
    deleted = [c for c in calls if c["path"] == "sync/Deleted"]
    moves = [c for c in calls if c["path"] == "system/Divisions"]
    assert len(deleted) <= len(sandbox.divisions)
    assert len(moves) == 1
    me = [c for c in calls if c["path"] == "current/Me"]
    assert len(me) == 1
    assert len(calls) - len(deleted) - len(moves) - len(me) == len(streams) * len(sandbox.divisions)


def test_start_date_uses_sync_timestamp(sandbox, tmp_path):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division], start_date="2030-01-01T00:00:00Z")
    sandbox.reset_log()
    out = run_tap(config, streams={"transaction_lines"})
    assert out.records.get("transaction_lines", []) == []
    paths = [c["path"] for c in api_calls(sandbox)]
    assert "read/sync/Sync/SyncTimestamp" in paths


def test_moments_are_utc_calendar_dates_are_days_and_types_are_cast(sandbox, tmp_path):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    out = run_tap(config, streams={"transaction_lines"})
    row = out.records["transaction_lines"][0]
    assert isinstance(row["Timestamp"], int)
    assert row["Division"] == division
    for name in ("Modified", "Created"):
        assert row[name].endswith("+00:00"), row[name]
    assert len(row["Date"]) == 10 and date.fromisoformat(row["Date"]), row["Date"]


def test_upsert_of_two_runs_equals_source(sandbox, tmp_path):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    first = run_tap(config, streams={"gl_accounts"})
    target = sandbox.records(division, "financial/GLAccounts")[0]["ID"]
    sandbox.update(division, "financial/GLAccounts", target, Description="Changed")
    second = run_tap(config, streams={"gl_accounts"}, state=first.state)
    table = upsert(first.records["gl_accounts"] + second.records["gl_accounts"], ("ID", "Division"))
    source = {(r["ID"], division): r for r in sandbox.records(division, "financial/GLAccounts")}
    assert table.keys() == source.keys()
    assert table[(target, division)]["Description"] == "Changed"
