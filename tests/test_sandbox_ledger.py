"""The sandbox's ledger is financially coherent (exact_sandbox/ledger.py): the statements the dbt
models build on it mean something only if these hold."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from tests.e2e.ledger_reference import cents, open_items, section_of

TL = "financialtransaction/TransactionLines"


@pytest.fixture(scope="module")
def ledger():
    from exact_sandbox import start_sandbox

    handle = start_sandbox(divisions="101,102")
    try:
        yield {d: {path: handle.records(d, path) for path in (
            TL, "financial/GLAccounts", "financial/GLClassifications", "financial/GLAccountClassificationMappings",
            "financial/FinancialPeriods", "financial/Journals", "cashflow/Receivables", "cashflow/Payments")}
            for d in (101, 102)}
    finally:
        handle.stop()


def test_every_entry_balances_to_the_cent(ledger):
    for tables in ledger.values():
        entries = defaultdict(Decimal)
        for line in tables[TL]:
            entries[line["EntryID"]] += cents(line["AmountDC"])
        assert len(entries) > 50 and not [e for e, total in entries.items() if total]


def test_accounts_have_balance_types_and_most_a_classification(ledger):
    for tables in ledger.values():
        gls = tables["financial/GLAccounts"]
        assert {g["BalanceType"] for g in gls} == {"B", "W"}
        assert all(g["BalanceSide"] in ("D", "C") for g in gls)
        classes = {c["ID"]: c for c in tables["financial/GLClassifications"]}
        mappings = tables["financial/GLAccountClassificationMappings"]
        assert all(m["Classification"] in classes and m["GLSchemeCode"] == "RGS" for m in mappings)
        mapped = {m["GLAccount"] for m in mappings}
        assert 0 < len(gls) - len(mapped) <= 2  # a gap or two, as real administrations have
        sections = {section_of(g, None) for g in gls}
        assert sections == {"assets", "liabilities", "equity", "income", "expenses"}


def test_each_later_year_opens_with_last_years_balances_and_result(ledger):
    for tables in ledger.values():
        gls = {g["ID"]: g for g in tables["financial/GLAccounts"]}
        lines = tables[TL]
        years = sorted({line["FinancialYear"] for line in lines})
        assert len(years) == 2 and {p["FinYear"] for p in tables["financial/FinancialPeriods"]} == set(years)
        closing, opening = defaultdict(Decimal), defaultdict(Decimal)
        for line in lines:
            if line["FinancialYear"] == years[0]:
                closing[line["GLAccount"]] += cents(line["AmountDC"])
            elif line["Type"] == 10:
                opening[line["GLAccount"]] += cents(line["AmountDC"])
        result = sum(v for k, v in closing.items() if gls[k]["BalanceType"] == "W")
        carried = {k: v for k, v in closing.items() if gls[k]["BalanceType"] == "B"}
        retained = next(k for k, g in gls.items() if g["Type"] == 52)
        carried[retained] = carried.get(retained, Decimal(0)) + result
        assert {k: v for k, v in carried.items() if v} == dict(opening)
        assert all(line["Type"] != 10 or gls[line["GLAccount"]]["BalanceType"] == "B" for line in lines)


def test_open_receivables_and_payables_are_the_unpaid_invoices(ledger):
    for division, tables in ledger.items():
        gls = {g["ID"]: g for g in tables["financial/GLAccounts"]}
        last = max(line["FinancialYear"] for line in tables[TL])
        balance = defaultdict(Decimal)
        for line in tables[TL]:
            if line["FinancialYear"] == last:
                balance[gls[line["GLAccount"]]["Code"]] += cents(line["AmountDC"])
        receivables = open_items(lambda _, path, t=tables: t[path], division, "cashflow/Receivables")
        payables = open_items(lambda _, path, t=tables: t[path], division, "cashflow/Payments")
        assert receivables == balance["1300"] > 0 and payables == -balance["1600"] > 0
        # Each open receivable is an invoice in the ledger that no receipt settled.
        invoices = {line["InvoiceNumber"] for line in tables[TL] if line["Type"] == 20}
        open_rows = [r for r in tables["cashflow/Receivables"] if r["Status"] == 20]
        assert open_rows and all(r["InvoiceNumber"] in invoices and not r["IsFullyPaid"] for r in open_rows)
