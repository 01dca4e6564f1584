"""Full resyncs: the deletion log's retention gap and division moves, with ACTIVATE_VERSION.

A small model of target-postgres (``Warehouse``) loads the tap's messages the way
0.8.1 does: upsert on the key, ``_sdc_table_version`` from the message's version,
and an ACTIVATE_VERSION V that removes every row of the table whose version is
empty or lower than V (``hard_delete: true``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from exactonline_api.errors import DailyBudgetExhausted
from tests.taprun import TapOutput, run_tap, tap_config

pytestmark = pytest.mark.slow  # full tap runs against the sandbox, several per test

ACCOUNTS = "crm/Accounts"
LINES = "financialtransaction/TransactionLines"
STALE = (datetime.now(timezone.utc) - timedelta(days=70)).isoformat()


class Warehouse:
    """target-postgres 0.8.1 in a few lines (hard_delete: true)."""

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] = {}
        self.tables: dict[str, dict[tuple, tuple[dict, int | None]]] = {}

    def load(self, out: TapOutput) -> Warehouse:
        for msg in out.messages:
            stream = msg.get("stream")
            if msg["type"] == "SCHEMA":
                self.keys[stream] = msg["key_properties"]
                self.tables.setdefault(stream, {})
            elif msg["type"] == "RECORD":
                row = msg["record"]
                self.tables[stream][tuple(row[k] for k in self.keys[stream])] = (row, msg.get("version"))
            elif msg["type"] == "ACTIVATE_VERSION":
                table = self.tables[stream]
                for key in [k for k, (_, v) in table.items() if v is None or v < msg["version"]]:
                    del table[key]
        return self

    def live(self, stream: str, division: int | None = None) -> set[tuple]:
        return {k for k, (row, _) in self.tables.get(stream, {}).items()
                if "_sdc_deleted_at" not in row and (division is None or row["Division"] == division)}


def source(sandbox, path: str, divisions) -> set[tuple]:
    return {(r["ID"], d) for d in divisions for r in sandbox.records(d, path)}


def of(out: TapOutput, kind: str, stream: str | None = None) -> list[dict]:
    return [m for m in out.messages if m["type"] == kind and (stream is None or m.get("stream") == stream)]


def partitions(state: dict, stream: str) -> dict[int, dict]:
    return {p["context"]["Division"]: p for p in state["bookmarks"][stream]["partitions"]}


def age_deletion_check(state: dict, stream: str, division: int) -> dict:
    partitions(state, stream)[division]["deleted_checked_at"] = STALE
    return state


def api_calls(sandbox, **filters) -> list[dict]:
    return [c for c in sandbox.requests(**filters) if not c["path"].startswith("oauth2")]


# -- the retention gap ---------------------------------------------------------------------------


def test_retention_gap_resyncs_every_division_with_a_version_and_one_activate_version(sandbox, tmp_path, caplog):
    config = tap_config(sandbox, tmp_path)
    streams = {"accounts", "gl_accounts", "deleted"}
    first = run_tap(config, streams=streams)
    warehouse = Warehouse().load(first)
    gap_division, other = sandbox.divisions[0], sandbox.divisions[1]
    # Deleted "during the gap": by the time the tap looks, Exact's log no longer has them.
    gone = [r["ID"] for r in sandbox.records(other, ACCOUNTS)[:2]]
    for key in gone:
        sandbox.delete(other, ACCOUNTS, key)

    caplog.set_level(logging.WARNING)
    second = run_tap(config, streams=streams, state=age_deletion_check(first.state, "accounts", gap_division))

    records = of(second, "RECORD", "accounts")
    versions = {m.get("version") for m in records}
    assert len(versions) == 1 and isinstance(next(iter(versions)), int), versions
    version = versions.pop()
    # every division read in full, not only the one with the gap
    assert {(m["record"]["ID"], m["record"]["Division"]) for m in records} == \
        source(sandbox, ACCOUNTS, sandbox.divisions)
    # one ACTIVATE_VERSION, for accounts only, after its last record
    activations = of(second, "ACTIVATE_VERSION")
    assert [(m["stream"], m["version"]) for m in activations] == [("accounts", version)]
    assert second.messages.index(activations[0]) > second.messages.index(records[-1])
    # the other streams stay incremental and unversioned
    assert all("version" not in m for m in of(second, "RECORD") if m["stream"] != "accounts")
    assert second.records.get("gl_accounts", []) == []
    assert "older than Exact keeps its deletion log" in caplog.text
    assert "ACTIVATE_VERSION" in caplog.text

    # the target drops the rows deleted during the gap; the others are all there
    warehouse.load(second)
    assert warehouse.live("accounts") == source(sandbox, ACCOUNTS, sandbox.divisions)
    assert not {(key, other) for key in gone} & set(warehouse.tables["accounts"])
    # state: the version is no longer pending, the deletion mark restarts at the log head
    assert "resync_version" not in second.state["bookmarks"]["accounts"]
    for part in partitions(second.state, "accounts").values():
        assert part["deleted_timestamp"] and part["deleted_checked_at"] > STALE

    # the next run is an ordinary incremental run again
    third = run_tap(config, streams=streams, state=second.state)
    assert third.records.get("accounts", []) == []
    assert of(third, "ACTIVATE_VERSION") == []


def test_without_activate_version_only_the_gap_division_is_reread(sandbox, tmp_path, caplog):
    config = tap_config(sandbox, tmp_path, resync_activate_version=False)
    first = run_tap(config, streams={"accounts"})
    gap_division = sandbox.divisions[0]
    caplog.set_level(logging.WARNING)
    second = run_tap(config, streams={"accounts"},
                     state=age_deletion_check(first.state, "accounts", gap_division))
    assert {(r["ID"], r["Division"]) for r in second.records["accounts"]} == \
        source(sandbox, ACCOUNTS, [gap_division])
    assert all("version" not in m for m in of(second, "RECORD"))
    assert of(second, "ACTIVATE_VERSION") == []
    assert "rows deleted in Exact during the gap may remain" in caplog.text


def test_budget_stop_mid_resync_continues_with_the_same_version(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(volumes={"transaction_lines": 3500}, divisions="101,102", minutely_limit=1000)
    config = tap_config(sandbox, tmp_path, daily_call_reserve=2)
    first = run_tap(config, streams={"transaction_lines"})
    warehouse = Warehouse().load(first)
    gone = sandbox.records(102, LINES)[7]["ID"]
    sandbox.delete(102, LINES, gone)

    # a new day with too few calls to read 101 in full again
    sandbox.advance(86400)
    sandbox.set(daily_limit=7)
    second = run_tap(config, streams={"transaction_lines"}, allow_error=True,
                     state=age_deletion_check(first.state, "transaction_lines", 102))
    assert isinstance(second.error, DailyBudgetExhausted)
    assert of(second, "ACTIVATE_VERSION") == []
    version = second.state["bookmarks"]["transaction_lines"]["resync_version"]
    assert second.records["transaction_lines"]
    assert {m.get("version") for m in of(second, "RECORD")} == {version}
    warehouse.load(second)
    # deleted after the stop, from the part of the stopped division that was read already
    stopped = partitions(second.state, "transaction_lines")
    stopped = next(d for d, p in stopped.items() if "deleted_checked_at" not in p)
    read_before = next(r["ID"] for r in second.records["transaction_lines"] if r["Division"] == stopped)
    sandbox.delete(stopped, LINES, read_before)

    # the next day: the resync goes on with the same version, then activates it once
    sandbox.advance(86400)
    sandbox.set(daily_limit=5000)
    third = run_tap(config, streams={"transaction_lines"}, state=second.state)
    assert third.records["transaction_lines"], "the stopped division was not continued"
    assert {m.get("version") for m in of(third, "RECORD")} == {version}
    assert [(m["stream"], m["version"]) for m in of(third, "ACTIVATE_VERSION")] == [("transaction_lines", version)]
    assert "resync_version" not in third.state["bookmarks"]["transaction_lines"]
    warehouse.load(third)
    assert warehouse.live("transaction_lines") == source(sandbox, LINES, [101, 102])
    assert (gone, 102) not in warehouse.tables["transaction_lines"]
    tombstones = [r for r in third.records["transaction_lines"] if "_sdc_deleted_at" in r]
    assert [(r["ID"], r["Division"]) for r in tombstones] == [(read_before, stopped)]
    # continued, not restarted: the rows read before the stop were not read again
    def keys(out: TapOutput) -> list[tuple]:
        return [(r["ID"], r["Division"]) for r in out.records["transaction_lines"] if "_sdc_deleted_at" not in r]

    assert not set(keys(second)) & set(keys(third))
    assert len(keys(second)) + len(keys(third)) == len(source(sandbox, LINES, [101, 102])) + 1  # + read_before


# -- division moves --------------------------------------------------------------------------------


# a sync stream, a sync stream with many rows, a standard stream on Modified, lines through their parent
MOVE_STREAMS = {"accounts": ACCOUNTS, "transaction_lines": LINES, "journals": "financial/Journals",
                "purchase_entry_lines": "purchaseentry/PurchaseEntryLines"}


def test_division_move_rereads_the_moved_division_and_leaves_the_others_incremental(sandbox, tmp_path, caplog):
    config = tap_config(sandbox, tmp_path, resync_activate_version=False)
    streams = {*MOVE_STREAMS, "deleted"}
    sandbox.reset_log()
    first = run_tap(config, streams=streams)
    assert len(api_calls(sandbox, path="system/Divisions")) == 1  # the first run records the dates
    for part in partitions(first.state, "accounts").values():
        assert "division_move_date" in part and part["division_move_date"] is None
    # a run without changes: what the other divisions cost when nothing moved
    sandbox.reset_log()
    quiet = run_tap(config, streams=streams, state=first.state)
    assert not quiet.records
    moved, others = sandbox.divisions[1], [d for d in sandbox.divisions if d != sandbox.divisions[1]]
    # system/Divisions is the run's one grants call, made on whichever division is current (the
    # last one used, which parallel readers leave open): counted once below, not per division.
    quiet_calls = sorted((c["path"], c["division"], str(c["query"])) for c in api_calls(sandbox)
                         if c["division"] in others and c["path"] != "system/Divisions")

    sandbox.admin("POST", f"/divisions/{moved}/move", {})
    sandbox.reset_log()
    caplog.set_level(logging.WARNING)
    second = run_tap(config, streams=streams, state=quiet.state)

    assert f"division {moved} was moved" in caplog.text
    for stream, path in MOVE_STREAMS.items():
        got = [(r["ID"], r["Division"]) for r in second.records[stream]]
        assert len(got) == len(set(got)), f"{stream}: a row came twice"
        assert got and set(got) == source(sandbox, path, [moved]), stream
    assert all("_sdc_deleted_at" not in r for rows in second.records.values() for r in rows)
    assert of(second, "ACTIVATE_VERSION") == []
    # the other divisions made exactly the calls of a run without changes
    assert sorted((c["path"], c["division"], str(c["query"])) for c in api_calls(sandbox)
                  if c["division"] in others and c["path"] != "system/Divisions") == quiet_calls
    assert len(api_calls(sandbox, path="system/Divisions")) == 1
    # the new move date is remembered: the next run is incremental everywhere
    third = run_tap(config, streams=streams, state=second.state)
    assert not third.records


def test_division_move_with_activate_version_resyncs_every_division(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path)
    streams = {"accounts", "journals", "deleted"}
    first = run_tap(config, streams=streams)
    warehouse = Warehouse().load(first)
    moved = sandbox.divisions[2]
    gone = sandbox.records(moved, ACCOUNTS)[0]["ID"]
    sandbox.delete(moved, ACCOUNTS, gone)
    sandbox.admin("POST", f"/divisions/{moved}/move", {})

    second = run_tap(config, streams=streams, state=first.state)
    activations = {m["stream"]: m["version"] for m in of(second, "ACTIVATE_VERSION")}
    assert set(activations) == {"accounts", "journals"}  # never the raw deleted log
    for stream in ("accounts", "journals"):
        assert {m.get("version") for m in of(second, "RECORD", stream)} == {activations[stream]}
    assert all("version" not in m for m in of(second, "RECORD", "deleted"))
    assert {(r["ID"], r["Division"]) for r in second.records["accounts"]} == \
        source(sandbox, ACCOUNTS, sandbox.divisions)
    warehouse.load(second)
    assert warehouse.live("accounts") == source(sandbox, ACCOUNTS, sandbox.divisions)
    assert warehouse.live("journals") == source(sandbox, "financial/Journals", sandbox.divisions)


def test_move_dates_come_with_the_division_list_when_divisions_are_not_configured(sandbox, tmp_path):
    config = tap_config(sandbox, tmp_path, resync_activate_version=False)
    del config["divisions"]
    sandbox.reset_log()
    first = run_tap(config, streams={"gl_accounts"})
    assert len(api_calls(sandbox, path="system/Divisions")) == 1
    assert "DivisionMoveDate" in api_calls(sandbox, path="system/Divisions")[0]["query"]["$select"]
    moved = sandbox.divisions[0]
    sandbox.admin("POST", f"/divisions/{moved}/move", {})
    sandbox.reset_log()
    second = run_tap(config, streams={"gl_accounts"}, state=first.state)
    assert len(api_calls(sandbox, path="system/Divisions")) == 1
    assert {r["Division"] for r in second.records["gl_accounts"]} == {moved}
    assert len(second.records["gl_accounts"]) == len(sandbox.records(moved, "financial/GLAccounts"))
    assert partitions(second.state, "gl_accounts")[moved]["division_move_date"]
