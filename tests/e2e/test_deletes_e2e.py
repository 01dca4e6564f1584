"""Deletions in the warehouse end to end: `meltano run tap-exactonline target-postgres` into PostgreSQL.

The retention gap with ``hard_delete: true``: the state's deletion check is older than Exact's
2-month deletion log (set with ``meltano state set``), so the tap re-reads the affected streams
in full with a version and ends each with ACTIVATE_VERSION. Rows deleted in Exact during the
"gap" are removed from the tables; every other row keeps its values. A stream without a gap is
untouched.

Soft delete (target-postgres' default) is checked in test_main_job.py, on the main job's
incremental run: tombstones get ``_sdc_deleted_at``, nothing else changes, and the target-postgres
0.8.1 behaviour the README warns about (the tombstone upsert writes the whole row, so the deleted
row's other columns become NULL).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.compare import delete_in_exact, merge_gone, some_ids, table_by_key as table, without_sdc

pytestmark = pytest.mark.e2e

STREAMS = ("accounts", "gl_accounts", "transaction_lines")
TASKS = ("run", "tap-exactonline", "target-postgres")
STATE_ID = "demo:tap-exactonline-to-target-postgres"


def job_env(**target) -> dict[str, str]:
    env = {"TAP_EXACTONLINE__SELECT": json.dumps([f"{s}.*" for s in STREAMS])}
    env.update({f"TARGET_POSTGRES_{name.upper()}": str(value).lower() for name, value in target.items()})
    return env


def test_retention_gap_with_hard_delete_removes_the_rows_deleted_meanwhile(meltano, exact, warehouse):
    env = job_env(hard_delete=True)
    meltano(*TASKS, env=env)
    before = {s: table(warehouse, s) for s in STREAMS}

    # deleted in Exact while the job did not run for months
    one, two = exact.divisions
    gone = merge_gone(delete_in_exact(exact, two, "accounts", some_ids(exact, two, "accounts", 2)),
                      delete_in_exact(exact, one, "transaction_lines", some_ids(exact, one, "transaction_lines", 1, skip=5)))
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
    later = delete_in_exact(exact, one, "gl_accounts", some_ids(exact, one, "gl_accounts", 1))
    third = meltano(*TASKS, env=env)
    assert {s: n for s, n in third.record_counts().items() if n} == {s: len(k) for s, k in later.items()}
    for stream, keys in later.items():
        rows = table(warehouse, stream)
        assert all(rows[key]["_sdc_deleted_at"] is not None for key in keys), stream
