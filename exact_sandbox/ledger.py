"""A financially coherent general ledger per division, so statements built on it mean something.

* A small Dutch chart of accounts with Exact's GL account types, balance (B) and profit-and-loss
  (W) accounts and their normal side; GL classifications shaped like the Dutch reference scheme
  (RGS) and the mapping of most accounts onto them (two accounts are left unmapped on purpose:
  real administrations have gaps, and the statements must fall back to the account itself).
* Journals, and financial periods that are the calendar months of each year.
* Transaction lines booked as a bookkeeper would: sales and purchase invoices (with VAT),
  receipts and payments that settle them, salaries, interest, depreciation. Every entry balances
  to the cent. Each year after the first starts with an opening entry (Type 10) that carries
  the balance accounts forward and the previous year's result into retained earnings, as
  Exact's year closing does. The generated sales invoices are booked too.
* Receivables and payables (cashflow/Receivables, cashflow/Payments): one per invoice still
  open in the ledger, so they add up to the debtors' and creditors' balances; rows beyond
  those are settled invoices (``IsFullyPaid``), which is how tests asking for many rows get them.

Amounts are whole cents while booking, so no entry is off by a float rounding.
"""

from __future__ import annotations

from datetime import date, timedelta

from .generate import GenContext, domain, guid
from .timeutil import ms_date, ms_of

DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)

# (code, description, Exact GL account type, BalanceType, BalanceSide, RGS classification or None)
CHART = [
    ("0100", "Inventaris", 30, "B", "D", "BMva"),
    ("0500", "Eigen vermogen", 50, "B", "C", "BEiv"),
    ("0510", "Onverdeelde winst", 52, "B", "C", "BEiv"),
    ("0700", "Lening u/g", 55, "B", "C", None),
    ("1000", "Kas", 10, "B", "D", "BLim"),
    ("1100", "Bank", 12, "B", "D", "BLim"),
    ("1300", "Debiteuren", 20, "B", "D", "BVor"),
    ("1500", "Te betalen btw", 24, "B", "C", "BSch"),
    ("1510", "Te vorderen btw", 24, "B", "D", "BVor"),
    ("1600", "Crediteuren", 22, "B", "C", "BSch"),
    ("3000", "Voorraad", 40, "B", "D", "BVrd"),
    ("4000", "Personeelskosten", 125, "W", "D", "WPer"),
    ("4100", "Huisvestingskosten", 121, "W", "D", "WBed"),
    ("4200", "Autokosten", 121, "W", "D", "WBed"),
    ("4300", "Kantoorkosten", 121, "W", "D", "WBed"),
    ("4400", "Verkoopkosten", 121, "W", "D", "WBed"),
    ("4800", "Afschrijvingen", 122, "W", "D", None),
    ("7000", "Inkoopwaarde omzet", 111, "W", "D", "WKpr"),
    ("8000", "Omzet hoog tarief", 110, "W", "C", "WOmz"),
    ("8100", "Omzet laag tarief", 110, "W", "C", "WOmz"),
    ("8200", "Omzet export", 110, "W", "C", "WOmz"),
    ("9000", "Rentebaten", 160, "W", "C", "WFbe"),
]
TYPE_DESCRIPTIONS = {10: "Cash", 12: "Bank", 20: "Accounts receivable", 22: "Accounts payable", 24: "VAT",
                     30: "Fixed assets", 40: "Inventory", 50: "Capital stock", 52: "Retained earnings",
                     55: "Long term debt", 110: "Revenue", 111: "Cost of goods", 121: "Sales, general administrative expenses",
                     122: "Depreciation costs", 125: "Employee costs", 160: "Interest income"}

# (code, name, parent code, Balance side): the top of the RGS tree the chart maps onto.
RGS = [
    ("B", "Balans", None, "D"), ("W", "Winst- en verliesrekening", None, "C"),
    ("BMva", "Materiële vaste activa", "B", "D"), ("BVrd", "Voorraden", "B", "D"),
    ("BVor", "Vorderingen", "B", "D"), ("BLim", "Liquide middelen", "B", "D"),
    ("BEiv", "Eigen vermogen", "B", "C"), ("BSch", "Kortlopende schulden", "B", "C"),
    ("WOmz", "Netto-omzet", "W", "C"), ("WKpr", "Kostprijs van de omzet", "W", "D"),
    ("WPer", "Personeelskosten", "W", "D"), ("WBed", "Overige bedrijfskosten", "W", "D"),
    ("WFbe", "Financiële baten en lasten", "W", "C"),
]
RGS_SCHEME = ("RGS", "Referentie Grootboekschema 3.5")

# (code, description, Exact journal type)
JOURNALS = [("10", "Kas", 10), ("20", "Bank", 12), ("60", "Verkoopboek", 20), ("65", "Inkoopboek", 22),
            ("90", "Memoriaal", 90)]
# Transaction line Type per kind of entry (Exact's codes) and the journal it is booked in.
OPENING, SALE, PURCHASE, CASHFLOW, OTHER = 10, 20, 30, 40, 90
JOURNAL_OF = {OPENING: "90", SALE: "60", PURCHASE: "65", CASHFLOW: "20", OTHER: "90"}
MAX_OPEN = 6  # open invoices per side before the next entry settles the oldest: keeps open items few


def day_of(ms: int) -> date:
    return _EPOCH + timedelta(days=ms // DAY_MS)


def ms_of_day(day: date) -> int:
    return (day - _EPOCH).days * DAY_MS


def years_of(ctx: GenContext) -> list[int]:
    first = day_of(ctx.history_start_ms)
    last = first + timedelta(days=max(ctx.history_days - 1, 0))
    return list(range(first.year, last.year + 1))


def _chart_row(i: int) -> tuple:
    """The i-th GL account: the chart, then numbered copies when more rows are asked for."""
    code, description, *rest = CHART[i % len(CHART)]
    if i >= len(CHART):
        code, description = f"{code}{i // len(CHART)}", f"{description} {i // len(CHART)}"
    return (code, description, *rest)


@domain("financial/GLAccounts")
def _gl_accounts(rows, put, rng, ctx):
    for i, row in enumerate(rows):
        code, description, kind, balance_type, side, _ = _chart_row(i)
        put(row, Code=code, Description=description, SearchCode=code, Type=kind,
            TypeDescription=TYPE_DESCRIPTIONS.get(kind, description), BalanceSide=side, BalanceType=balance_type,
            IsBlocked=False, ReportingCode=None)


@domain("financial/GLClassifications")
def _gl_classifications(rows, put, rng, ctx):
    ids: dict[str, str] = {}
    namespace = guid(ctx.rng("rgs-namespace"))
    for i, row in enumerate(rows):
        code, name, parent, balance = RGS[i] if i < len(RGS) else (f"X{i}", f"Extra {i}", None, "D")
        ids[code] = put.get(row, "ID")
        put(row, Code=code, Name=name, Description=name, Parent=ids.get(parent) if parent else None,
            Balance=balance, Abstract=parent is None, Nillable=False,
            PeriodType="I" if code.startswith("B") else "D", TaxonomyNamespace=namespace,
            TaxonomyNamespaceDescription=RGS_SCHEME[1])


@domain("financial/GLAccountClassificationMappings")
def _gl_mappings(rows, put, rng, ctx):
    gls, gi = ctx.rows_of("financial/GLAccounts"), ctx.index_of("financial/GLAccounts")
    classes, ci = ctx.rows_of("financial/GLClassifications"), ctx.index_of("financial/GLClassifications")
    by_code = {c[ci["Code"]]: c for c in classes}
    pairs = [(gl, by_code[_chart_row(i)[5]]) for i, gl in enumerate(gls) if _chart_row(i)[5] in by_code]
    scheme_id = guid(ctx.rng("rgs-scheme"))
    for row, (gl, cls) in zip(rows, pairs * (len(rows) // max(len(pairs), 1) + 1)):
        put(row, GLAccount=gl[gi["ID"]], GLAccountCode=gl[gi["Code"]], GLAccountDescription=gl[gi["Description"]],
            Classification=cls[ci["ID"]], ClassificationCode=cls[ci["Code"]],
            ClassificationDescription=cls[ci["Description"]], GLSchemeCode=RGS_SCHEME[0],
            GLSchemeDescription=RGS_SCHEME[1], GLSchemeID=scheme_id)


@domain("financial/Journals")
def _journals(rows, put, rng, ctx):
    for i, row in enumerate(rows):
        code, description, kind = JOURNALS[i] if i < len(JOURNALS) else (str(100 + i), f"Dagboek {100 + i}", 90)
        put(row, Code=code, Description=description, Type=kind, Currency="EUR", IsBlocked=False)


@domain("financial/FinancialPeriods")
def _financial_periods(rows, put, rng, ctx):
    """Calendar months of the history's years (and the years after, when more rows are asked for)."""
    first = years_of(ctx)[0]
    for i, row in enumerate(rows):
        year, month = first + i // 12, 1 + i % 12
        start = date(year, month, 1)
        end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        put(row, FinYear=year, FinPeriod=month, StartDate=ms_date(ms_of_day(start)),
            EndDate=ms_date(ms_of_day(end)))


# -- the ledger -------------------------------------------------------------------------------


class _Chart:
    """The division's GL accounts by role, as rows of financial/GLAccounts."""

    def __init__(self, ctx: GenContext) -> None:
        rows, gi = ctx.rows_of("financial/GLAccounts"), ctx.index_of("financial/GLAccounts")
        self.gi = gi
        by_code = {r[gi["Code"]]: r for r in rows}
        self.first = by_code  # the chart's own accounts (copies have other codes)
        self.balance = [r for r in rows if r[gi["BalanceType"]] == "B"]
        self.revenue = [by_code[c] for c in ("8000", "8100", "8200") if c in by_code]
        self.costs = [by_code[c] for c in ("7000", "4100", "4200", "4300", "4400") if c in by_code]

    def get(self, code: str):
        return self.first.get(code)


class _Book:
    """Books entries into the transaction line rows, keeping balances and open invoices."""

    def __init__(self, rows, put, rng, ctx: GenContext) -> None:
        self.rows, self.put, self.rng, self.ctx = rows, put, rng, ctx
        self.chart = _Chart(ctx)
        accounts, ai = ctx.rows_of("crm/Accounts"), ctx.index_of("crm/Accounts")
        self.accounts, self.ai = accounts, ai
        self.suppliers = [a for a in accounts if a[ai["IsSupplier"]]] or accounts
        self.used = 0
        self.balances: dict[str, int] = {}  # GL account ID -> cents (debit positive), this year
        self.numbers: dict[tuple[int, str], int] = {}
        self.open_sales: list[dict] = []
        self.open_purchases: list[dict] = []
        self.next_purchase = 1

    @property
    def left(self) -> int:
        return len(self.rows) - self.used

    def entry(self, kind: int, day: date, lines: list[tuple], description: str, account=None,
              invoice: int | None = None, due: date | None = None) -> bool:
        """Book ``lines`` [(gl row, cents)] as one entry; False (nothing booked) when it does not fit."""
        if len(lines) > self.left or not lines:
            return False
        assert sum(c for _, c in lines) == 0, "an entry must balance"
        put, gi, ai = self.put, self.chart.gi, self.ai
        journal = JOURNAL_OF[kind]
        key = (day.year, journal)
        self.numbers[key] = number = self.numbers.get(key, 0) + 1
        entry_id = guid(self.rng)
        date_text = ms_date(ms_of_day(day))
        due_text = ms_date(ms_of_day(due)) if due else None
        journal_description = next(d for c, d, _ in JOURNALS if c == journal)
        for n, (gl, cents) in enumerate(lines, start=1):
            row = self.rows[self.used]
            self.used += 1
            gl_id = gl[gi["ID"]]
            self.balances[gl_id] = self.balances.get(gl_id, 0) + cents
            amount = cents / 100
            put(row, EntryID=entry_id, EntryNumber=(day.year % 100) * 1_000_000 + int(journal) * 10_000 + number,
                LineNumber=n, Date=date_text, FinancialYear=day.year, FinancialPeriod=day.month,
                JournalCode=journal, JournalDescription=journal_description, Type=kind, Status=20,
                GLAccount=gl_id, GLAccountCode=gl[gi["Code"]], GLAccountDescription=gl[gi["Description"]],
                Account=account[ai["ID"]] if account else None,
                AccountCode=account[ai["Code"]] if account else None,
                AccountName=account[ai["Name"]] if account else None,
                AmountDC=amount, AmountFC=amount, Currency="EUR", ExchangeRate=1.0,
                Description=f"{description} ({n})" if len(lines) > 1 else description, Quantity=1.0,
                InvoiceNumber=invoice, DueDate=due_text, Asset=None, Item=None, Project=None,
                Subscription=None, Document=None, OffsetID=None, CostCenter=None, CostUnit=None)
        return True

    # -- kinds of entries ---------------------------------------------------------------------

    def opening(self, day: date, capital: bool) -> bool:
        """The year's opening entry: balance accounts carried forward, last year's result into
        retained earnings (Exact's year closing); the very first one brings in the capital."""
        chart = self.chart
        if capital:
            bank, fixed, equity, loan = (chart.get(c) for c in ("1100", "0100", "0500", "0700"))
            lines = [(bank, 5_000_000), (fixed, 2_000_000), (equity, -5_000_000), (loan, -2_000_000)]
        else:
            gi = chart.gi
            retained = chart.get("0510")
            balance_ids = {g[gi["ID"]] for g in chart.balance}
            result = sum(c for gl_id, c in self.balances.items() if gl_id not in balance_ids)
            lines = []
            for gl in chart.balance:
                cents = self.balances.get(gl[gi["ID"]], 0) + (result if gl is retained else 0)
                if cents:
                    lines.append((gl, cents))
        self.balances = {}
        return self.entry(OPENING, day, lines, "Beginbalans" if not capital else "Kapitaalstorting")

    def sale(self, day: date, account, invoice: int, net: int, vat: int, revenue) -> bool:
        debtors, vat_gl = self.chart.get("1300"), self.chart.get("1500")
        lines = [(debtors, net + vat), (revenue, -net)] + ([(vat_gl, -vat)] if vat else [])
        due = day + timedelta(days=30)
        if not self.entry(SALE, day, lines, f"Factuur {invoice}", account, invoice, due):
            return False
        self.open_sales.append({"account": account, "invoice": invoice, "cents": net + vat})
        return True

    def purchase(self, day: date) -> bool:
        account = self.suppliers[int(self.rng.random() * len(self.suppliers))]
        net = 5_000 + int(self.rng.random() * 295_000)
        vat = net * 21 // 100
        cost = self.chart.costs[int(self.rng.random() * len(self.chart.costs))]
        invoice = 9_000_000 + self.next_purchase
        lines = [(cost, net), (self.chart.get("1510"), vat), (self.chart.get("1600"), -(net + vat))]
        if not self.entry(PURCHASE, day, lines, f"Inkoopfactuur {invoice}", account, invoice,
                          day + timedelta(days=30)):
            return False
        self.next_purchase += 1
        self.open_purchases.append({"account": account, "invoice": invoice, "cents": net + vat})
        return True

    def settle(self, day: date, sales: bool) -> bool:
        """Receipt of the oldest open sales invoice, or payment of the oldest purchase invoice."""
        queue = self.open_sales if sales else self.open_purchases
        if not queue:
            return False
        item = queue[0]
        bank = self.chart.get("1100")
        other = self.chart.get("1300" if sales else "1600")
        cents = item["cents"] if sales else -item["cents"]
        lines = [(bank, cents), (other, -cents)]
        what = "Ontvangst" if sales else "Betaling"
        if not self.entry(CASHFLOW, day, lines, f"{what} {item['invoice']}", item["account"], item["invoice"]):
            return False
        queue.pop(0)
        return True

    def expense(self, day: date, code: str, low: int, high: int, credit: str, kind: int, text: str) -> bool:
        cents = low + int(self.rng.random() * (high - low))
        return self.entry(kind, day, [(self.chart.get(code), cents), (self.chart.get(credit), -cents)], text)


@domain("financialtransaction/TransactionLines")
def _transaction_lines(rows, put, rng, ctx):
    book = _Book(rows, put, rng, ctx)
    chart = book.chart
    if not chart.revenue or not chart.costs or len(chart.first) < len(CHART) or not book.accounts:
        return  # a chart too small to book on (a test asking for 3 GL accounts): generic rows
    invoices, si = ctx.rows_of("salesinvoice/SalesInvoices"), ctx.index_of("salesinvoice/SalesInvoices")
    by_id = {a[book.ai["ID"]]: a for a in book.accounts}
    pending = sorted(((ms_of(r[si["InvoiceDate"]]) or 0, r) for r in invoices), key=lambda p: p[0])
    next_invoice = max([r[si["InvoiceNumber"]] or 0 for r in invoices] + [24_000_000]) + 1
    years = years_of(ctx)
    start = day_of(ctx.history_start_ms)
    # Room kept for the opening entries of the later years: one line per balance account.
    reserve = len(chart.balance) * (len(years) - 1)
    budget = max(len(rows) - reserve - 4, 1)
    step = ctx.history_days / max(budget / 2.6, 1)
    book.opening(start, capital=True)
    year, offset = start.year, 0.0
    while book.left > reserve + 4:
        offset += rng.random() * 2 * step
        day = start + timedelta(days=min(int(offset), ctx.history_days - 1))
        if day.year != year:
            year = day.year
            book.opening(date(year, 1, 1), capital=False)
            reserve -= len(chart.balance)
        if pending and pending[0][0] <= ms_of_day(day):
            invoice_ms, invoice = pending.pop(0)
            account = by_id.get(invoice[si["InvoiceTo"]]) or book.accounts[0]
            net = round((invoice[si["AmountFCExclVat"]] or 0) * 100)
            vat = round((invoice[si["VATAmountFC"]] or 0) * 100)
            # Booked on its own date (never before this year's opening entry).
            booked_on = max(day_of(invoice_ms), date(year, 1, 1))
            if book.sale(booked_on, account, invoice[si["InvoiceNumber"]], net, vat, chart.get("8000")):
                continue
            break
        roll = rng.random()
        if len(book.open_sales) > MAX_OPEN or (0.30 <= roll < 0.50 and book.open_sales):
            booked = book.settle(day, sales=True)
        elif len(book.open_purchases) > MAX_OPEN or (0.50 <= roll < 0.65 and book.open_purchases):
            booked = book.settle(day, sales=False)
        elif roll < 0.30:
            account = book.accounts[int(rng.random() * len(book.accounts))]
            net = 20_000 + int(rng.random() * 680_000)
            revenue = chart.revenue[int(rng.random() * len(chart.revenue))]
            booked = book.sale(day, account, next_invoice, net, net * 21 // 100, revenue)
            next_invoice += booked
        elif roll < 0.82:
            booked = book.purchase(day)
        elif roll < 0.92:
            booked = book.expense(day, "4000", 200_000, 600_000, "1100", CASHFLOW, "Salarissen")
        elif roll < 0.96:
            booked = book.expense(day, "1100", 1_000, 20_000, "9000", CASHFLOW, "Rente")
        else:
            booked = book.expense(day, "4800", 10_000, 50_000, "0100", OTHER, "Afschrijving inventaris")
        if not booked:
            break
    # Lines left over: cash moved between bank and till (pairs), a last line of nothing when odd.
    last = day_of(ms_of_day(start) + (ctx.history_days - 1) * DAY_MS)
    last = max(last, date(year, 1, 1)) if last.year == year else date(year, 12, 31)
    while book.left >= 2:
        book.expense(last, "1000", 1_000, 10_000, "1100", CASHFLOW, "Kasopname")
    if book.left == 1:
        book.entry(OTHER, last, [(chart.get("1000"), 0)], "Nulregel")


# -- open items ---------------------------------------------------------------------------------


def _invoices(ctx: GenContext, control_code: str, kind: int) -> list[dict]:
    """Every invoice booked on a control account (debtors 1300, creditors 1600): its invoice line,
    what is still open of it and when it was settled. Opening lines carry balances, not invoices."""
    lines, ti = ctx.rows_of("financialtransaction/TransactionLines"), ctx.index_of("financialtransaction/TransactionLines")
    gls, gi = ctx.rows_of("financial/GLAccounts"), ctx.index_of("financial/GLAccounts")
    control = next((g[gi["ID"]] for g in gls if g[gi["Code"]] == control_code), None)
    found: dict[tuple, dict] = {}
    for row in lines:
        if row[ti["GLAccount"]] != control or row[ti["Type"]] == OPENING or row[ti["InvoiceNumber"]] is None:
            continue
        item = found.setdefault((row[ti["Account"]], row[ti["InvoiceNumber"]]), {"cents": 0, "line": None, "paid": None})
        item["cents"] += round(row[ti["AmountDC"]] * 100)
        if row[ti["Type"]] == kind:
            item["line"] = row
        else:
            item["paid"] = row[ti["Date"]]
    return [item for item in found.values() if item["line"] is not None]


def _open_items(rows, put, rng, ctx, control_code: str, kind: int) -> None:
    """Open invoices first (the amount still due, positive as Exact's screens show it on both
    sides), then settled ones (status 50), repeated when a test asks for more rows."""
    items = _invoices(ctx, control_code, kind)
    if not items:
        return
    ti = ctx.index_of("financialtransaction/TransactionLines")
    ordered = [i for i in items if i["cents"]] + [i for i in items if not i["cents"]]
    sign = 1 if kind == SALE else -1
    for n, row in enumerate(rows):
        item = ordered[n] if n < len(ordered) else ordered[len(ordered) - 1 - n % len(ordered)]
        line = item["line"]
        gross = sign * round(line[ti["AmountDC"]] * 100)
        is_open = n < len(ordered) and item["cents"] != 0
        due = sign * item["cents"] if is_open else gross  # a settled item keeps its amount
        date_ms = ms_of(line[ti["Date"]]) or 0
        put(row, Account=line[ti["Account"]], AccountCode=line[ti["AccountCode"]],
            AccountName=line[ti["AccountName"]], AmountDC=due / 100, AmountFC=due / 100, Currency="EUR",
            Description=line[ti["Description"]], EntryID=line[ti["EntryID"]], EntryNumber=line[ti["EntryNumber"]],
            EntryDate=line[ti["Date"]], InvoiceDate=line[ti["Date"]], DueDate=line[ti["DueDate"]],
            InvoiceNumber=line[ti["InvoiceNumber"]], GLAccount=line[ti["GLAccount"]],
            GLAccountCode=line[ti["GLAccountCode"]], GLAccountDescription=line[ti["GLAccountDescription"]],
            Journal=line[ti["JournalCode"]], JournalDescription=line[ti["JournalDescription"]],
            # Exact's cashflow status: 20 open, 50 matched (settled by a receipt or payment).
            IsFullyPaid=not is_open, LastPaymentDate=None if is_open else item["paid"],
            Status=20 if is_open else 50, TransactionAmountDC=gross / 100, TransactionAmountFC=gross / 100,
            TransactionEntryID=line[ti["EntryID"]], TransactionID=line[ti["ID"]], TransactionType=kind,
            TransactionDueDate=line[ti["DueDate"]], TransactionIsReversal=False,
            TransactionReportingYear=day_of(date_ms).year, TransactionReportingPeriod=day_of(date_ms).month,
            EndDate=None, EndYear=None, EndPeriod=None, Document=None, RateFC=1.0)


@domain("cashflow/Receivables")
def _receivables(rows, put, rng, ctx):
    _open_items(rows, put, rng, ctx, "1300", SALE)


@domain("cashflow/Payments")
def _payables(rows, put, rng, ctx):
    _open_items(rows, put, rng, ctx, "1600", PURCHASE)
