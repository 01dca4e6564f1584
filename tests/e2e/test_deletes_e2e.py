"""Deletions in the warehouse end to end: `meltano run tap-exactonline target-postgres` into PostgreSQL.

1. Soft delete (target-postgres' default): rows deleted in Exact come back from sync/Deleted as
   tombstones and get ``_sdc_deleted_at``; every other row of every table is unchanged, column
   for column. It also pins down a target-postgres 0.8.1 behaviour the README warns about: the
   tombstone upsert writes the whole row, so the deleted row's other columns become NULL.
2. The retention gap with ``hard_delete: true``: the state's deletion check is older than Exact's
   2-month deletion log (set with ``meltano state set``), so the tap re-reads the affected streams
   in full with a version and ends each with ACTIVATE_VERSION. Rows deleted in Exact during the
   "gap" are removed from the tables; every other row keeps its values. A stream without a gap is
   untouched.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.compare import entity, records_path

pytestmark = pytest.mark.e2e

STREAMS = ("accounts", "gl_accounts", "transaction_lines")
TASKS = ("run", "tap-exactonline", "target-postgres")
STATE_ID = "demo:tap-exactonline-to-target-postgres"
# sync/Deleted EntityType -> stream (REFERENCE.md §6)
ENTITY_STREAMS = {1: "transaction_lines", 2: "accounts", 7: "gl_accounts"}


def job_env(**target) -> dict[str, str]:
    env = {"TAP_EXACTONLINE__SELECT": json.dumps([f"{s}.*" for s in STREAMS])}
    env.update({f"TARGET_POSTGRES_{name.upper()}": str(value).lower() for name, value in target.items()})
    return env


def table(warehouse, stream: str) -> dict[tuple, dict]:
    """The whole table by primary key (key values as text)."""
    key = entity(stream).key
    return {tuple(str(row[k]).lower() for k in key): row for row in warehouse.rows(stream)}


def without_sdc(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_sdc_")}


def delete_in_exact(exact, division: int, stream: str, count: int, *, skip: int = 0) -> dict[str, set[tuple]]:
    """Delete rows in the sandbox; returns every key it logged as deleted (cascades included), per stream."""
    gone: dict[str, set[tuple]] = {}
    for row in exact.records(division, records_path(stream))[skip:skip + count]:
        logged = exact.delete(division, records_path(stream), row["ID"])["deleted"]
        for entry in logged:
            name = ENTITY_STREAMS.get(entry["EntityType"])
            if name:
                gone.setdefault(name, set()).add((str(entry["EntityKey"]).lower(), str(division)))
    assert gone.get(stream), f"deleting {stream} logged nothing"
    return gone


def test_soft_delete_marks_the_deleted_rows_and_changes_nothing_else(meltano, exact, warehouse):
    env = job_env()
    meltano(*TASKS, env=env)
    before = {s: table(warehouse, s) for s in STREAMS}
    assert all(before.values()), {s: len(t) for s, t in before.items()}
    gone = delete_in_exact(exact, exact.divisions[0], "accounts", 2)
    for stream, keys in delete_in_exact(exact, exact.divisions[1], "transaction_lines", 1, skip=3).items():
        gone.setdefault(stream, set()).update(keys)

    second = meltano(*TASKS, env=env)
    assert second.record_counts().get("gl_accounts", 0) == 0

    for stream in STREAMS:
        after = table(warehouse, stream)
        assert after.keys() == before[stream].keys(), f"{stream}: rows appeared or vanished"
        marked = {k for k, row in after.items() if row["_sdc_deleted_at"] is not None}
        assert marked == gone.get(stream, set()), stream
        unchanged = {k for k in after if after[k] == before[stream][k]}
        assert unchanged == after.keys() - marked, f"{stream}: rows changed that were not deleted"
        for key in marked:
            # target-postgres 0.8.1 upserts the tombstone as a whole row: only the key, the
            # Division and the _sdc_ columns keep a value, every other column becomes NULL.
            kept = {k for k, v in without_sdc(after[key]).items() if v is not None}
            assert kept == set(entity(stream).key), (stream, key, kept)
            assert any(v is not None for k, v in without_sdc(before[stream][key]).items()
                       if k not in entity(stream).key)


def test_retention_gap_with_hard_delete_removes_the_rows_deleted_meanwhile(meltano, exact, warehouse):
    env = job_env(hard_delete=True)
    meltano(*TASKS, env=env)
    before = {s: table(warehouse, s) for s in STREAMS}

    # deleted in Exact while the job did not run for months
    gone = delete_in_exact(exact, exact.divisions[1], "accounts", 2)
    for stream, keys in delete_in_exact(exact, exact.divisions[0], "transaction_lines", 1, skip=5).items():
        gone.setdefault(stream, set()).update(keys)
    # ... and the job's last deletion check is older than Exact keeps its deletion log
    stored = json.loads(meltano("state", "get", STATE_ID).output.strip().splitlines()[-1])
    state = stored.get("singer_state", stored)
    stale = (datetime.now(timezone.utc) - timedelta(days=75)).isoformat()
    gapped = {"accounts": exact.divisions[0], "transaction_lines": exact.divisions[1]}
    for stream, division in gapped.items():
        part = next(p for p in state["bookmarks"][stream]["partitions"] if p["context"]["Division"] == division)
        part["deleted_checked_at"] = stale
    meltano("state", "set", "--force", STATE_ID, json.dumps({"singer_state": state}))

    second = meltano(*TASKS, env=env)
    assert "older than Exact keeps its deletion log" in second.output
    counts = second.record_counts()
    for stream in gapped:
        # re-read in full for every division, not only the one with the gap
        assert counts.get(stream) == len(before[stream]) - len(gone.get(stream, ())), (stream, counts)
    assert counts.get("gl_accounts", 0) == 0

    for stream in STREAMS:
        after = table(warehouse, stream)
        expected = before[stream].keys() - gone.get(stream, set())
        assert after.keys() == expected, f"{stream}: {len(after.keys() - expected)} extra, " \
                                         f"{len(expected - after.keys())} missing"
        for key, row in after.items():
            assert without_sdc(row) == without_sdc(before[stream][key]), (stream, key)
            assert row["_sdc_deleted_at"] is None
        if stream in gapped:
            assert len({row["_sdc_table_version"] for row in after.values()}) == 1
        else:
            assert after == {k: before[stream][k] for k in expected}, f"{stream} was touched"

    # the version is no longer pending; the next run is incremental again, and with
    # hard_delete a tombstone still only marks its row (hard_delete acts on ACTIVATE_VERSION)
    final = json.loads(meltano("state", "get", STATE_ID).output.strip().splitlines()[-1])
    final = final.get("singer_state", final)
    assert all("resync_version" not in final["bookmarks"][s] for s in STREAMS)
    later = delete_in_exact(exact, exact.divisions[0], "gl_accounts", 1)
    third = meltano(*TASKS, env=env)
    assert {s: n for s, n in third.record_counts().items() if n} == {s: len(k) for s, k in later.items()}
    for stream, keys in later.items():
        rows = table(warehouse, stream)
        assert all(rows[key]["_sdc_deleted_at"] is not None for key in keys), stream
