"""What dbt made of the tables: the statements in the marts, held to the ones computed in Python from
the sandbox's own records (ledger_reference.py), to the cent. Used by test_main_job.py, whose
incremental run is the whole main job (extract, load, dbt run) followed by dbt's tests."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal

from tests.e2e.compare import records_path
from tests.e2e.ledger_reference import cents, open_items, statements

TL = "financialtransaction/TransactionLines"
MARTS = "exactonline_analytics_marts"
AS_OF = "2024-12-31"  # DBT_POSTGRES_AS_OF_DATE of the run: the open items are as of this day


def one_entry(exact, division: int) -> list[str]:
    """The lines of one whole entry (deleting every line keeps the ledger balanced): a salary payment
    of the last year, which no receivable or payable refers to."""
    lines = exact.records(division, TL)
    last_year = max(line["FinancialYear"] for line in lines)
    entry = next(line["EntryID"] for line in lines
                 if line["FinancialYear"] == last_year and line["Type"] == 40 and line["InvoiceNumber"] is None)
    return [line["ID"] for line in lines if line["EntryID"] == entry]


# The tables whose rows refer to an account (dbt's relationship tests hold them to stg_exact__accounts).
REFER_TO_ACCOUNTS = ("transaction_lines", "sales_invoices", "receivables", "payments")


def unreferenced_accounts(exact, division: int) -> list[str]:
    """Accounts that no line, invoice or open item refers to: the ones Exact lets a user delete."""
    referred = {str(value).lower() for stream in REFER_TO_ACCOUNTS
                for row in exact.records(division, records_path(stream)) for value in row.values()}
    return [row["ID"] for row in exact.records(division, records_path("accounts")) if str(row["ID"]).lower() not in referred]


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


def assert_dbt_ran_every_model_and_test(output: str) -> None:
    # `meltano run` fails when a dbt test fails; these show that the tests did run, all of them.
    summaries = re.findall(r"Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+)", output)
    assert len(summaries) == 2, output[-3000:]
    models, tests = (int(s[0]) for s in summaries)
    assert models >= 15 and tests >= 30 and all(s[1:] == ("0", "0") for s in summaries), summaries


def assert_left_out_of_the_marts(warehouse, line_ids: list[str]) -> None:
    keys = [str(i).lower() for i in line_ids]
    assert warehouse.query(f"select count(*) from {MARTS}.fct_general_ledger where transaction_line_id::text = any(%s)",
                           (keys,)) == [(0,)]


def assert_statements_equal_the_ledger(exact, warehouse) -> None:
    expected = {key: (f.result, *f.balance) for key, f in statements(exact.records, exact.divisions).items()}
    got = warehouse_statements(warehouse)
    assert len(expected) >= 2 * len(exact.divisions), expected  # several years per division
    assert got == expected
    for (division, year), (result, assets, liabilities, equity) in got.items():
        assert assets == liabilities + equity + result, (division, year)
    for division in exact.divisions:
        assert_open_items_match_control_accounts(exact, warehouse, division)
        assert_revenue_adds_up(exact, warehouse, division)


def assert_open_items_match_control_accounts(exact, warehouse, division: int) -> None:
    """Open receivables and payables: what Exact lists, and what the control accounts hold."""
    for side, path, code, sign in (("receivable", "cashflow/Receivables", "1300", 1),
                                   ("payable", "cashflow/Payments", "1600", -1)):
        (total, as_of), = warehouse.query(
            f"select sum(open_amount_dc), array_agg(distinct as_of_date::text) from {MARTS}.fct_open_items "
            "where division = %s and side = %s", (division, side))
        assert cents(total) == open_items(exact.records, division, path) != 0
        assert as_of == [AS_OF]
        (ledger,), = warehouse.query(
            f"""select sum(closing_balance) from {MARTS}.fct_trial_balance
                where division = %s and gl_account_code = %s and (financial_year, financial_period) =
                (select financial_year, max(financial_period) from {MARTS}.fct_trial_balance
                 where division = %s group by 1 order by 1 desc limit 1)""", (division, code, division))
        assert sign * cents(ledger) == cents(total), f"{side}s of {division} differ from account {code}"


def assert_revenue_adds_up(exact, warehouse, division: int) -> None:
    """Revenue per customer and month adds up to the turnover accounts' lines."""
    revenue_gl = {g["ID"] for g in exact.records(division, "financial/GLAccounts") if g["Type"] == 110}
    months: dict[str, Decimal] = defaultdict(Decimal)
    for line in exact.records(division, TL):
        if line["GLAccount"] in revenue_gl:
            months[f"{line['FinancialYear']}-{line['FinancialPeriod']:02d}"] -= cents(line["AmountDC"])
    rows = warehouse.query(f"select to_char(month, 'YYYY-MM'), sum(revenue) from {MARTS}.fct_revenue_by_customer_month "
                           "where division = %s group by 1", (division,))
    assert {m: cents(v) for m, v in rows} == {m: v for m, v in months.items() if v}
