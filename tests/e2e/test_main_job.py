"""The main job end to end: `meltano run` with the real tap, target-postgres and PostgreSQL.

first sync -> the warehouse equals the sandbox (row by row for accounts, GL accounts and
transaction lines; counts for every selected stream) -> inserts, updates and deletes in
the sandbox -> incremental sync (fewer records, same equality, tombstones carry
``_sdc_deleted_at``) -> rerun with no changes (nothing moves).

Each sync runs the job's extract and load block (``tap-exactonline target-postgres``), which
shares the job's state ID. The whole job, its dbt step included, runs in test_transform_e2e.py,
whose subject is what dbt makes of the tables; here a dbt step would only cost time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.compare import compared_field_count, diff_rows, entity, records_path

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROW_BY_ROW = ("accounts", "gl_accounts", "transaction_lines")
EXTRACT_LOAD = ("run", "tap-exactonline", "target-postgres")  # the main job without its dbt step


def selected_streams(extractor: str = "tap-exactonline") -> list[str]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    plugin = next(p for p in project["plugins"]["extractors"] if p["name"] == extractor)
    return [pattern.split(".", 1)[0] for pattern in plugin["select"] if not pattern.startswith("!")]


def sandbox_rows(exact, stream: str) -> list[dict]:
    rows: list[dict] = []
    for division in exact.divisions:
        for row in exact.records(division, records_path(stream)):
            row = dict(row)
            row.setdefault("Division", division)
            rows.append(row)
    return rows


# Served by the sandbox from its settings, not stored as records: checked on their own.
NOT_STORED = {"divisions"}


def sandbox_counts(exact, streams) -> dict[str, int | None]:
    """Rows per stream in the sandbox; None where its admin API has no such listing."""
    counts: dict[str, int | None] = {}
    for stream in streams:
        if stream in NOT_STORED:
            counts[stream] = None
            continue
        try:
            counts[stream] = len(sandbox_rows(exact, stream))
        except Exception:  # noqa: BLE001 - e.g. system/Divisions is served, not stored
            counts[stream] = None
    return counts


def assert_warehouse_equals_sandbox(exact, warehouse, streams) -> None:
    tables = warehouse.tables()
    problems: list[str] = []
    for stream in ROW_BY_ROW:
        assert stream in tables, f"{stream} did not land (tables: {sorted(tables)})"
        source = sandbox_rows(exact, stream)
        columns = warehouse.columns(stream)
        # Every field of the entity that the sandbox holds has its column: the comparison
        # below covers whole rows, not a convenient subset.
        fields = {f.name for f in entity(stream).fields}
        missing = sorted({name for row in source[:50] for name in row} & fields - columns)
        if missing:
            problems.append(f"{stream}: fields with no warehouse column: {missing}")
        assert compared_field_count(stream, source, columns) >= 5, f"{stream}: too few fields compared"
        problems += diff_rows(stream, source, warehouse.rows(stream))
    for stream, expected in sandbox_counts(exact, streams).items():
        if expected is None:
            continue
        got = warehouse.count(stream, live_only=True) if stream in tables else 0
        if got != expected:
            problems.append(f"{stream}: {got} live rows in the warehouse, {expected} in the sandbox")
    if "divisions" in streams:
        codes = {int(r[0]) for r in warehouse.query('SELECT DISTINCT "Code" FROM exactonline.divisions')}
        if not set(exact.divisions) <= codes:
            problems.append(f"divisions: {sorted(codes)} in the warehouse, sandbox has {list(exact.divisions)}")
    assert not problems, "warehouse differs from the sandbox:\n  " + "\n  ".join(problems)


def snapshot(warehouse) -> dict[str, list[tuple]]:
    """Every table's rows without the _sdc_* bookkeeping columns, sorted."""
    out = {}
    for table in sorted(warehouse.tables()):
        rows = warehouse.rows(table)
        out[table] = sorted(
            (tuple(sorted((k, repr(v)) for k, v in r.items() if not k.startswith("_sdc_")))
             + (("deleted", r.get("_sdc_deleted_at") is not None),))
            for r in rows
        )
    return out


def test_main_job_first_sync_changes_incremental_deletes_rerun(meltano, exact, warehouse):
    streams = selected_streams()
    division = exact.divisions[0]

    # -- 1. first sync -------------------------------------------------------------------------
    first = meltano(*EXTRACT_LOAD)
    assert_warehouse_equals_sandbox(exact, warehouse, streams)
    first_counts = first.record_counts()
    assert first_counts.get("transaction_lines", 0) > 0, first_counts
    # Only what the job selects lands.
    unexpected = warehouse.tables() - set(streams)
    assert not unexpected, f"tables for streams the job did not select: {sorted(unexpected)}"

    # -- 2. changes in Exact -------------------------------------------------------------------
    acc_path, gl_path, tl_path = (records_path(s) for s in ROW_BY_ROW)
    accounts = exact.records(division, acc_path)
    gl_accounts = exact.records(division, gl_path)
    lines = exact.records(division, tl_path)
    assert len(accounts) >= 3 and gl_accounts and len(lines) >= 2

    exact.update(division, acc_path, accounts[0]["ID"], {"Name": "Renamed by the e2e test"})
    exact.update(division, gl_path, gl_accounts[0]["ID"], {"Description": "Described by the e2e test"})
    exact.insert(division, acc_path, [{"Code": "E2E000001", "Name": "Inserted by the e2e test"}])
    deleted_account = accounts[1]["ID"]
    deleted_line = lines[0]["ID"]
    exact.delete(division, acc_path, deleted_account)
    exact.delete(division, tl_path, deleted_line)

    # -- 3. incremental sync -------------------------------------------------------------------
    second = meltano(*EXTRACT_LOAD)
    second_counts = second.record_counts()
    assert second_counts.get("transaction_lines", 0) < first_counts["transaction_lines"], (
        f"the second run was not incremental: {second_counts.get('transaction_lines')} transaction lines "
        f"after {first_counts['transaction_lines']} on the first"
    )
    assert second_counts.get("accounts", 0) < first_counts.get("accounts", 0)
    assert_warehouse_equals_sandbox(exact, warehouse, streams)

    renamed = warehouse.dicts('SELECT "Name" FROM exactonline.accounts WHERE "ID"::text = %s',
                              (str(accounts[0]["ID"]).lower(),))
    assert [r["Name"] for r in renamed] == ["Renamed by the e2e test"]
    inserted = warehouse.dicts('SELECT "Name" FROM exactonline.accounts WHERE "Code" LIKE %s', ("%E2E000001%",))
    assert [r["Name"] for r in inserted] == ["Inserted by the e2e test"]

    # Deletions: the rows stay, marked with _sdc_deleted_at.
    for table, key in (("accounts", deleted_account), ("transaction_lines", deleted_line)):
        assert "_sdc_deleted_at" in warehouse.columns(table)
        rows = warehouse.dicts(
            f'SELECT _sdc_deleted_at FROM exactonline."{table}" WHERE "ID"::text = %s AND "Division" = %s',
            (str(key).lower(), division))
        assert rows, f"the deleted {table} row {key} is gone from the warehouse (expected a tombstone)"
        assert all(r["_sdc_deleted_at"] is not None for r in rows), f"{table} {key}: _sdc_deleted_at not set"

    # -- 4. rerun without changes: nothing moves ------------------------------------------------
    before = snapshot(warehouse)
    third = meltano(*EXTRACT_LOAD)
    third_counts = third.record_counts()
    assert third_counts.get("transaction_lines", 0) <= second_counts.get("transaction_lines", 0)
    after = snapshot(warehouse)
    assert after.keys() == before.keys()
    changed = [t for t in before if before[t] != after[t]]
    assert not changed, f"a rerun without changes in Exact changed these tables: {changed}"
    assert_warehouse_equals_sandbox(exact, warehouse, streams)


def test_hourly_job_syncs_only_transaction_lines_with_its_own_state(meltano, exact, warehouse):
    assert selected_streams("tap-exactonline-hourly") == ["transaction_lines"]
    run = meltano("run", "exact-transaction-lines-hourly")
    assert warehouse.tables() == {"transaction_lines"}
    assert set(run.record_counts()) == {"transaction_lines"}
    problems = diff_rows("transaction_lines", sandbox_rows(exact, "transaction_lines"),
                         warehouse.rows("transaction_lines"))
    assert not problems, "\n".join(problems)

    # Its state is its own: the main job has none, so it still starts from scratch.
    state_ids = meltano("state", "list").output
    assert "demo:tap-exactonline-hourly-to-target-postgres" in state_ids
    assert "demo:tap-exactonline-to-target-postgres" not in state_ids


def test_key_of_each_compared_stream_is_in_the_registry():
    for stream in ROW_BY_ROW:
        assert entity(stream).key, stream
