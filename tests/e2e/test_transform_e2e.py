"""The T of the ELT: the main job (`meltano run exact-to-warehouse dbt-postgres:test`: extract, load,
dbt run, then dbt's tests) on the real PostgreSQL. Every dbt test passes, and the statements in the
marts equal the ones computed in Python from the sandbox's own records
(tests/e2e/ledger_reference.py), to the cent.

Lean: the sandbox's default (small) volumes, two divisions, only the streams dbt reads (its
sources, and the deletion log that brings tombstones); one load, then the run under test, which
also brings the tombstones of an entry deleted in Exact in between.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tests.e2e.ledger_reference import cents, open_items, statements

pytestmark = pytest.mark.e2e

TL = "financialtransaction/TransactionLines"
MARTS = "exactonline_analytics_marts"
AS_OF = "2024-12-31"
SOURCES = Path(__file__).resolve().parents[2] / "transform" / "models" / "staging" / "_sources.yml"


def dbt_sources() -> list[str]:
    (source,) = yaml.safe_load(SOURCES.read_text())["sources"]
    return [table["name"] for table in source["tables"]]


# The main job selects 35 streams; dbt reads a third of them. Loading the others costs the
# loader's time and checks nothing here (test_main_job.py loads them all).
SELECT = {"TAP_EXACTONLINE__SELECT": json.dumps([f"{s}.*" for s in [*dbt_sources(), "deleted"]])}


def delete_one_entry(exact, division: int) -> list[str]:
    """Delete a whole entry in Exact (every line, so the ledger stays balanced): a salary
    payment of the last year, which no receivable or payable refers to."""
    lines = exact.records(division, TL)
    last_year = max(line["FinancialYear"] for line in lines)
    entry = next(line["EntryID"] for line in lines
                 if line["FinancialYear"] == last_year and line["Type"] == 40 and line["InvoiceNumber"] is None)
    ids = [line["ID"] for line in lines if line["EntryID"] == entry]
    for key in ids:
        exact.delete(division, TL, key)
    return ids


def warehouse_statements(warehouse) -> dict[tuple[int, int], tuple]:
    """(result, assets, liabilities, equity) per division and year, at the year's last period."""
    rows = warehouse.query(f"""
        with year_end as (
            select division, financial_year, max(financial_period) as financial_period
            from {MARTS}.fct_balance_sheet group by 1, 2)
        select b.division, b.financial_year,
            (select sum(amount) from {MARTS}.fct_profit_and_loss p
             where p.division = b.division and p.financial_year = b.financial_year),
            sum(amount) filter (where section = 'assets'),
            sum(amount) filter (where section = 'liabilities'),
            sum(amount) filter (where section = 'equity'),
            sum(amount) filter (where section = 'result')
        from {MARTS}.fct_balance_sheet b join year_end using (division, financial_year, financial_period)
        group by 1, 2""")
    out = {}
    for division, year, pnl, assets, liabilities, equity, result in rows:
        assert pnl == result, f"{division}/{year}: P&L result {pnl} but balance-sheet result {result}"
        out[(division, year)] = tuple(cents(v or 0) for v in (result, assets, liabilities, equity))
    return out


def test_dbt_statements_equal_the_sandbox_ledger_to_the_cent(meltano, exact, warehouse):
    meltano("run", "tap-exactonline", "target-postgres", env=SELECT)
    division = exact.divisions[0]
    deleted = delete_one_entry(exact, division)

    # The main job as scheduled (extract, load, dbt run), then dbt's tests.
    run = meltano("run", "exact-to-warehouse", "dbt-postgres:test", env={**SELECT, "DBT_POSTGRES_AS_OF_DATE": AS_OF})
    # `meltano run` fails when a dbt test fails; these show that the tests did run, all of them.
    summaries = re.findall(r"Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+)", run.output)
    assert len(summaries) == 2, run.output[-3000:]
    models, tests = (int(s[0]) for s in summaries)
    assert models >= 15 and tests >= 30 and all(s[1:] == ("0", "0") for s in summaries), summaries

    # The deleted entry reached the warehouse as tombstones, and the marts left it out.
    tombstones = warehouse.query(
        'select count(*) from exactonline.transaction_lines where "ID"::text = any(%s) '
        'and "Division" = %s and _sdc_deleted_at is not null', ([str(i).lower() for i in deleted], division))
    assert tombstones == [(len(deleted),)]
    assert warehouse.query(f"select count(*) from {MARTS}.fct_general_ledger where transaction_line_id::text = any(%s)",
                           ([str(i).lower() for i in deleted],)) == [(0,)]

    expected = {key: (f.result, *f.balance) for key, f in statements(exact.records, exact.divisions).items()}
    got = warehouse_statements(warehouse)
    assert len(expected) >= 2 * len(exact.divisions), expected  # several years per division
    assert got == expected
    for (division_, year), (result, assets, liabilities, equity) in got.items():
        assert assets == liabilities + equity + result, (division_, year)

    for division_ in exact.divisions:
        # Open receivables and payables: what Exact lists, and what the control accounts hold.
        for side, path, code, sign in (("receivable", "cashflow/Receivables", "1300", 1),
                                       ("payable", "cashflow/Payments", "1600", -1)):
            (total, as_of), = warehouse.query(
                f"select sum(open_amount_dc), array_agg(distinct as_of_date::text) from {MARTS}.fct_open_items "
                "where division = %s and side = %s", (division_, side))
            assert cents(total) == open_items(exact.records, division_, path) != 0
            assert as_of == [AS_OF]
            (ledger,), = warehouse.query(
                f"""select sum(closing_balance) from {MARTS}.fct_trial_balance
                    where division = %s and gl_account_code = %s and (financial_year, financial_period) =
                    (select financial_year, max(financial_period) from {MARTS}.fct_trial_balance
                     where division = %s group by 1 order by 1 desc limit 1)""", (division_, code, division_))
            assert sign * cents(ledger) == cents(total), f"{side}s of {division_} differ from account {code}"

        # Revenue per customer and month adds up to the turnover accounts' lines.
        revenue_gl = {g["ID"] for g in exact.records(division_, "financial/GLAccounts") if g["Type"] == 110}
        months: dict[str, Decimal] = defaultdict(Decimal)
        for line in exact.records(division_, TL):
            if line["GLAccount"] in revenue_gl:
                months[f"{line['FinancialYear']}-{line['FinancialPeriod']:02d}"] -= cents(line["AmountDC"])
        rows = warehouse.query(f"select to_char(month, 'YYYY-MM'), sum(revenue) from {MARTS}.fct_revenue_by_customer_month "
                               "where division = %s group by 1", (division_,))
        assert {m: cents(v) for m, v in rows} == {m: v for m, v in months.items() if v}
