"""Deletions in Exact reach the entity streams as tombstones, for one sync/Deleted read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.taprun import run_tap, tap_config, upsert

pytestmark = pytest.mark.slow  # full tap runs against the sandbox, several per test


def deleted_calls(sandbox) -> list[dict]:
    return [c for c in sandbox.requests() if c["path"] == "sync/Deleted"]


def test_deletions_become_tombstones_on_the_entity_streams(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path)
    streams = {"accounts", "transaction_lines", "gl_accounts", "deleted"}
    first = run_tap(config, streams=streams)
    division = sandbox.divisions[1]
    gone_accounts = [r["ID"] for r in sandbox.records(division, "crm/Accounts")[:2]]
    gone_line = sandbox.records(division, "financialtransaction/TransactionLines")[5]["ID"]
    for key in gone_accounts:
        sandbox.delete(division, "crm/Accounts", key)
    sandbox.delete(division, "financialtransaction/TransactionLines", gone_line)
    sandbox.reset_log()

    second = run_tap(config, streams=streams, state=first.state)

    tombs = {s: [r for r in rows if "_sdc_deleted_at" in r] for s, rows in second.records.items()}
    assert sorted(r["ID"] for r in tombs["accounts"]) == sorted(gone_accounts)
    assert [r["ID"] for r in tombs["transaction_lines"]] == [gone_line]
    assert tombs.get("gl_accounts", []) == []
    for row in tombs["accounts"] + tombs["transaction_lines"]:
        assert row["Division"] == division
        assert row["_sdc_deleted_at"].endswith("+00:00")
    # the raw log names the entity and our stream
    raw = second.records["deleted"]
    assert {(r["EntityType"], r["StreamName"]) for r in raw} >= {(2, "accounts"), (1, "transaction_lines")}
    # one sync/Deleted read per division, shared by every stream
    assert len(deleted_calls(sandbox)) <= len(sandbox.divisions)

    # upserting both runs and applying tombstones leaves exactly what Exact has
    table = upsert(first.records["accounts"] + second.records["accounts"], ("ID", "Division"))
    live = {k for k, r in table.items() if "_sdc_deleted_at" not in r and k[1] == division}
    assert live == {(r["ID"], division) for r in sandbox.records(division, "crm/Accounts")}


def test_incremental_run_without_deletions_reads_the_log_once_per_division(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path)
    streams = {"accounts", "contacts", "transaction_lines", "deleted"}
    first = run_tap(config, streams=streams)
    sandbox.reset_log()
    run_tap(config, streams=streams, state=first.state)
    assert len(deleted_calls(sandbox)) == len(sandbox.divisions)


def test_deletions_before_the_first_sync_do_not_produce_phantoms(sandbox, tmp_path):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    sandbox.delete(division, "crm/Accounts", sandbox.records(division, "crm/Accounts")[0]["ID"])
    first = run_tap(config, streams={"accounts"})
    second = run_tap(config, streams={"accounts"}, state=first.state)
    assert all("_sdc_deleted_at" not in r for r in first.records["accounts"])
    assert second.records.get("accounts", []) == []


def test_routing_can_be_turned_off(sandbox, tmp_path):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division], route_deletes=False)
    first = run_tap(config, streams={"accounts", "deleted"})
    sandbox.delete(division, "crm/Accounts", sandbox.records(division, "crm/Accounts")[0]["ID"])
    second = run_tap(config, streams={"accounts", "deleted"}, state=first.state)
    assert second.records.get("accounts", []) == []
    assert [r["EntityType"] for r in second.records["deleted"]] == [2]


def test_retention_gap_resyncs_the_stream_in_full(sandbox, tmp_path, caplog):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    first = run_tap(config, streams={"accounts"})
    stale = (datetime.now(timezone.utc) - timedelta(days=70)).isoformat()
    for partition in first.state["bookmarks"]["accounts"]["partitions"]:
        partition["deleted_checked_at"] = stale
    second = run_tap(config, streams={"accounts"}, state=first.state)
    assert len(second.records["accounts"]) == len(sandbox.records(division, "crm/Accounts"))
    assert "older than Exact keeps its deletion log" in caplog.text
