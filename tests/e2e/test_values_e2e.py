"""Warehouse-true values end to end: `meltano run tap-exactonline target-postgres` into PostgreSQL.

A warehouse loaded while ``Date`` was a UTC date-time (reproduced with
``date_fields: {"transaction_lines": {"Date": "moment"}}``): what target-postgres 0.8.1 does when
the column's schema becomes ``date``, the upgrade step the README gives, and then what every
warehouse must hold: calendar dates in ``date`` columns as the days Exact shows, so that a year
total by ``extract(year from "Date")`` equals the total by ``FinancialYear`` (for lines booked in
the period of their calendar month), with entries on 1 January and 31 December; ``Created`` and
``Modified`` the exact UTC instants; account codes trimmed.

A fresh load's ``date`` columns are checked in test_main_job.py, whose row-by-row comparison
holds every calendar date to the day Exact shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import ROOT, psycopg

pytestmark = pytest.mark.e2e

AMS = ZoneInfo("Europe/Amsterdam")
LINES = "financialtransaction/TransactionLines"
DIVISION = 101
EDGES = {  # ID -> (date, FinancialYear): the days a UTC instant moves into the previous year
    "00000000-0000-4000-8000-0000000000a1": (date(2024, 1, 1), 2024),
    "00000000-0000-4000-8000-0000000000a2": (date(2023, 12, 31), 2023),
    "00000000-0000-4000-8000-0000000000a3": (date(2023, 1, 1), 2023),
}
SELECT = {"TAP_EXACTONLINE__SELECT": json.dumps(["transaction_lines.*", "accounts.*"]),
          "TAP_EXACTONLINE_DIVISIONS": json.dumps([DIVISION])}


def _local_ms(raw: str) -> int:
    return int(raw[len("/Date("):-len(")/")])


def utc_instant(raw: str) -> datetime:
    wall = datetime(1970, 1, 1) + timedelta(milliseconds=_local_ms(raw))
    return wall.replace(tzinfo=AMS).astimezone(timezone.utc)


def exact_day(day: date) -> str:
    """A calendar date as Exact stores it: local midnight, as ``/Date(ms)/``."""
    return f"/Date({(day - date(1970, 1, 1)).days * 86_400_000})/"


def add_edge_entries(exact) -> None:
    exact.insert(DIVISION, LINES, [
        {"ID": ident, "Date": exact_day(day), "FinancialYear": year, "FinancialPeriod": day.month, "AmountDC": 1000.0 + n, "Description": "edge"}
        for n, (ident, (day, year)) in enumerate(EDGES.items())])


def totals(warehouse, by: str) -> dict[int, float]:
    rows = warehouse.query(
        f'SELECT {by}, round(sum("AmountDC")::numeric, 2) FROM exactonline.transaction_lines '
        'WHERE extract(month FROM "Date") = "FinancialPeriod" GROUP BY 1 ORDER BY 1')
    return {int(year): float(total) for year, total in rows}


def test_upgrading_a_warehouse_with_timestamp_columns_then_dates_are_days(exact, meltano, warehouse):
    add_edge_entries(exact)
    old = {**SELECT, "TAP_EXACTONLINE_DATE_FIELDS": json.dumps({"transaction_lines": {"Date": "moment"}})}
    meltano("run", "tap-exactonline", "target-postgres", env=old)
    assert warehouse.column_types("transaction_lines")["Date"] == "timestamp without time zone"
    first = "00000000-0000-4000-8000-0000000000a1"
    before = warehouse.query('SELECT "Date" FROM exactonline.transaction_lines WHERE "ID"::text = %s', (first,))
    assert str(before[0][0]) == "2023-12-31 23:00:00"  # issue 13: 1 January landed in the previous year

    # The README's upgrade step, then an ordinary incremental run that brings one new line.
    sql = subprocess.run([sys.executable, str(ROOT / "scripts" / "upgrade_date_columns.py")],
                         capture_output=True, text=True, check=True).stdout
    with psycopg.connect(warehouse.dsn, autocommit=True) as conn:
        conn.execute(sql)
        conn.execute(sql)  # idempotent
    later = "00000000-0000-4000-8000-0000000000b1"
    exact.insert(DIVISION, LINES, [{"ID": later, "Date": exact_day(date(2024, 12, 31)), "FinancialYear": 2024,
                                    "FinancialPeriod": 12, "AmountDC": 7.0, "Description": "after the upgrade"}])
    meltano("run", "tap-exactonline", "target-postgres", env=SELECT)

    types = warehouse.column_types("transaction_lines")
    assert types["Date"] == "date" and types["DueDate"] == "date"
    assert types["Created"].startswith("timestamp") and types["Modified"].startswith("timestamp")
    landed = dict(warehouse.query('SELECT "ID"::text, "Date" FROM exactonline.transaction_lines '
                                  'WHERE "ID"::text = ANY(%s)', ([*EDGES, later],)))
    assert landed == {**{ident: day for ident, (day, _) in EDGES.items()}, later: date(2024, 12, 31)}
    by_date = totals(warehouse, 'extract(year FROM "Date")')
    assert by_date == totals(warehouse, '"FinancialYear"') and len(by_date) >= 2

    raw = {r["ID"]: r for r in exact.records(DIVISION, LINES)}
    rows = warehouse.query('SELECT "ID"::text, "Created", "Modified" FROM exactonline.transaction_lines')
    assert len(rows) == len(raw)
    for ident, created, modified in rows:
        for stored, value in ((raw[ident]["Created"], created), (raw[ident]["Modified"], modified)):
            if stored is not None:
                got = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
                assert got == utc_instant(stored), (ident, stored, value)
    codes = [c for (c,) in warehouse.query('SELECT "Code" FROM exactonline.accounts')]
    assert codes and all(c == c.strip() for c in codes)
