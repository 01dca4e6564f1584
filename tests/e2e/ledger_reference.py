"""The statements computed in Python straight from the sandbox's own records: the yardstick the
dbt marts are held to (tests/e2e/marts.py). Deliberately plain: a year's figures
are the sums of that year's transaction lines (its opening entry included) per GL account.

The section rules are the documented ones (transform/models/marts/dim_gl_accounts.sql): the
RGS classification decides when the account is mapped (BEiv is equity, its Balance side splits
assets from liabilities), else the account's type (50, 52: equity) and BalanceSide.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal


def cents(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


@dataclass
class YearFigures:
    """One division's year: profit (positive) and the balance sheet at the year's end."""

    result: Decimal = Decimal(0)
    sections: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    @property
    def balance(self) -> tuple[Decimal, Decimal, Decimal]:
        return self.sections["assets"], self.sections["liabilities"], self.sections["equity"]


def section_of(gl: dict, classification: dict | None) -> str:
    side = (classification or {}).get("Balance") or gl["BalanceSide"]
    if gl["BalanceType"] == "W":
        return "income" if side == "C" else "expenses"
    code = (classification or {}).get("Code") or ""
    if code.startswith("BEiv") or gl["Type"] in (50, 52):
        return "equity"
    return "liabilities" if side == "C" else "assets"


def statements(records_of, divisions, scheme: str = "RGS") -> dict[tuple[int, int], YearFigures]:
    """``records_of(division, path)`` -> raw sandbox records; figures per (division, year)."""
    figures: dict[tuple[int, int], YearFigures] = {}
    for division in divisions:
        gls = {g["ID"]: g for g in records_of(division, "financial/GLAccounts")}
        classes = {c["ID"]: c for c in records_of(division, "financial/GLClassifications")}
        mapped: dict[str, dict] = {}
        for m in sorted(records_of(division, "financial/GLAccountClassificationMappings"),
                        key=lambda m: m["GLSchemeCode"] != scheme):
            mapped.setdefault(m["GLAccount"], classes.get(m["Classification"]))
        per_account: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
        for line in records_of(division, "financialtransaction/TransactionLines"):
            per_account[(line["FinancialYear"], line["GLAccount"])] += cents(line["AmountDC"])
        for (year, gl_id), amount in per_account.items():
            gl = gls[gl_id]
            year_figures = figures.setdefault((division, year), YearFigures())
            section = section_of(gl, mapped.get(gl_id))
            if gl["BalanceType"] == "W":
                year_figures.result -= amount
            else:
                year_figures.sections[section] += amount if section == "assets" else -amount
    return figures


def open_items(records_of, division: int, path: str) -> Decimal:
    """What is still due on the open receivables (or payables) of a division."""
    return sum((cents(r["AmountDC"]) for r in records_of(division, path) if r["Status"] in (20, 30)), Decimal(0))
