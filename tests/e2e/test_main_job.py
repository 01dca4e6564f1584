"""The main job end to end: `meltano run` with the real tap, target-postgres, dbt and PostgreSQL.

first sync (the job's extract and load block, ``tap-exactonline target-postgres``) -> the
warehouse equals the sandbox (row by row for accounts, GL accounts and transaction lines; counts
for every selected stream) -> inserts, updates and deletes in the sandbox (an account, a whole
entry) -> the whole job as scheduled (extract, load, dbt run) and dbt's tests: fewer records, the
same equality, tombstones with ``_sdc_deleted_at`` and every other row unchanged, every dbt test
passing and the statements in the marts equal to the ones computed from the sandbox's records, to
the cent (marts.py) -> rerun with no changes (nothing moves).

The extract and load block shares the job's state ID, so the runs are one job's history. One
scenario rather than one test per subject: each `meltano run` of the 35 streams costs CPU-seconds,
and every step's checks hold for the state the steps before left.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e import marts
from tests.e2e.compare import (compared_field_count, delete_in_exact, diff_rows, entity, merge_gone, records_path,
                               table_by_key, without_sdc)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROW_BY_ROW = ("accounts", "gl_accounts", "transaction_lines")
EXTRACT_LOAD = ("run", "tap-exactonline", "target-postgres")  # the main job without its dbt step
WHOLE_JOB = ("run", "exact-to-warehouse", "dbt-postgres:test")  # as scheduled, then dbt's tests


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
    # Calendar dates land as dates (the comparison above holds them to the day Exact shows).
    types = warehouse.column_types("transaction_lines")
    assert (types["Date"], types["DueDate"]) == ("date", "date")
    before = {s: table_by_key(warehouse, s) for s in ROW_BY_ROW}

    # -- 2. changes in Exact -------------------------------------------------------------------
    acc_path, gl_path, _ = (records_path(s) for s in ROW_BY_ROW)
    accounts = exact.records(division, acc_path)
    gl_accounts = exact.records(division, gl_path)
    assert len(accounts) >= 3 and gl_accounts

    exact.update(division, acc_path, accounts[0]["ID"], {"Name": "Renamed by the e2e test"})
    exact.update(division, gl_path, gl_accounts[0]["ID"], {"Description": "Described by the e2e test"})
    exact.insert(division, acc_path, [{"Code": "E2E000001", "Name": "Inserted by the e2e test"}])
    entry = marts.one_entry(exact, division)
    deletable = [key for key in marts.unreferenced_accounts(exact, division) if key != accounts[0]["ID"]]
    assert deletable, "every account of the sandbox is referred to: none can be deleted"
    gone = merge_gone(delete_in_exact(exact, division, "accounts", deletable[:1]),
                      delete_in_exact(exact, division, "transaction_lines", entry))
    changed = {"accounts": {(str(accounts[0]["ID"]).lower(), str(division))},
               "gl_accounts": {(str(gl_accounts[0]["ID"]).lower(), str(division))}}

    # -- 3. the whole job, incremental, then dbt's tests -------------------------------------------
    second = meltano(*WHOLE_JOB, env={"DBT_POSTGRES_AS_OF_DATE": marts.AS_OF})
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
    inserted = warehouse.dicts('SELECT "ID"::text AS id, "Name" FROM exactonline.accounts WHERE "Code" LIKE %s',
                               ("%E2E000001%",))
    assert [r["Name"] for r in inserted] == ["Inserted by the e2e test"]
    appeared = {"accounts": {(inserted[0]["id"], str(division))}}
    assert_deleted_rows_marked_and_nothing_else_changed(warehouse, before, gone, changed, appeared)

    marts.assert_dbt_ran_every_model_and_test(second.output)
    marts.assert_left_out_of_the_marts(warehouse, entry)
    marts.assert_statements_equal_the_ledger(exact, warehouse)

    # -- 4. rerun without changes: nothing moves ------------------------------------------------
    before_rerun = snapshot(warehouse)
    third = meltano(*EXTRACT_LOAD)
    third_counts = third.record_counts()
    assert third_counts.get("transaction_lines", 0) <= second_counts.get("transaction_lines", 0)
    after = snapshot(warehouse)
    assert after.keys() == before_rerun.keys()
    moved = [t for t in before_rerun if before_rerun[t] != after[t]]
    assert not moved, f"a rerun without changes in Exact changed these tables: {moved}"
    assert_warehouse_equals_sandbox(exact, warehouse, streams)


def assert_deleted_rows_marked_and_nothing_else_changed(warehouse, before, gone, changed, appeared) -> None:
    """Soft delete (target-postgres' default): the deleted rows stay, with ``_sdc_deleted_at``; of
    the other rows only those changed in Exact differ, column for column, and only those inserted
    appeared."""
    for stream in ROW_BY_ROW:
        after = table_by_key(warehouse, stream)
        assert after.keys() == before[stream].keys() | appeared.get(stream, set()), f"{stream}: rows appeared or vanished"
        marked = {k for k, row in after.items() if row["_sdc_deleted_at"] is not None}
        assert marked == gone.get(stream, set()), stream
        assert "_sdc_deleted_at" in warehouse.columns(stream)
        unchanged = {k for k in before[stream] if after[k] == before[stream][k]}
        assert unchanged == before[stream].keys() - marked - changed.get(stream, set()), \
            f"{stream}: rows changed that were neither changed nor deleted in Exact"
        for key in marked:
            # target-postgres 0.8.1 upserts the tombstone as a whole row: only the key, the
            # Division and the _sdc_ columns keep a value, every other column becomes NULL.
            kept = {k for k, v in without_sdc(after[key]).items() if v is not None}
            assert kept == set(entity(stream).key), (stream, key, kept)
            assert any(v is not None for k, v in without_sdc(before[stream][key]).items()
                       if k not in entity(stream).key)


def test_key_of_each_compared_stream_is_in_the_registry():
    for stream in ROW_BY_ROW:
        assert entity(stream).key, stream
