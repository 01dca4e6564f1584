"""Deterministic rows for every entity, from the seed and the division.

Each entity is generated from its own RNG (seeded by seed, division and entity),
so the data never depends on the order in which tables are first touched. Rows
are lists laid out like the entity's fields. Generic rows come from a few
per-entity templates (cheap to copy, so 100,000 rows take about a second); the
entities the tests lean on get generators with real relations on top.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from .metadata import ROWVERSION, EntityGroup
from .timeutil import ms_date

TEMPLATES = 7
DEFAULT_VOLUMES = {
    "crm/Accounts": 25,
    "crm/Contacts": 40,
    "crm/Addresses": 25,
    "financial/GLAccounts": 22,  # ledger.CHART
    "financial/GLClassifications": 13,  # ledger.RGS
    "financial/GLAccountClassificationMappings": 20,  # the chart's mapped accounts
    "financial/Journals": 5,
    "financial/FinancialPeriods": 24,  # two years of months
    "cashflow/Receivables": 20,  # open invoices first, then settled ones
    "cashflow/Payments": 20,
    "logistics/Items": 20,
    "financialtransaction/TransactionLines": 300,
    "documents/Documents": 15,
    "documents/DocumentAttachments": 20,
    "documents/DocumentTypes": 6,
    "salesinvoice/SalesInvoices": 15,
    "salesinvoice/SalesInvoiceLines": 40,
    "salesorder/SalesOrders": 10,
    "salesorder/SalesOrderLines": 25,
    "sync/Deleted": 5,
}
# Entities served specially (or not stored at all) get no generated rows.
NOT_GENERATED = frozenset({"read/sync/Sync/SyncTimestamp", "current/Me", "system/Divisions",
                           "system/AllDivisions", "hrm/Divisions"})


def guid(rng: random.Random) -> str:
    bits = rng.getrandbits(128)
    text = "%032x" % bits
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{'89ab'[bits & 3]}{text[17:20]}-{text[20:]}"


@dataclass
class GenContext:
    """What a generator may know: the division, time mapping and its neighbours."""

    seed: int
    division: int
    history_start_ms: int
    step_ms: int
    user_id: str
    user_name: str
    base_url: str
    rows_of: Callable[[str], list[list]]  # rows of another entity (generated first if needed)
    index_of: Callable[[str], dict[str, int]]
    rowversion_base: int = 0
    pad_codes: bool = True
    today_ms: int = 0  # midnight of the sandbox's start day, Exact local time
    history_days: int = 700  # the generated history: history_start_ms and this many days

    def rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, self.division, *parts)))

    def modified_ms(self, ts: int) -> int:
        """Generated history: Modified grows with the rowversion, as it does at Exact."""
        return self.history_start_ms + (ts - self.rowversion_base) * self.step_ms


def _generic_value(name: str, edm: str, rng: random.Random, ctx: GenContext, j: int):
    if name == "Division":
        return ctx.division
    if edm == "Edm.Guid":
        if name in ("Creator", "Modifier", "UserID", "DeletedBy"):
            return ctx.user_id
        return guid(rng) if rng.random() < 0.7 else None
    if edm == "Edm.String":
        if name.endswith("FullName"):
            return ctx.user_name
        if "Email" in name:
            return f"info{j + 1}@example.com"
        if name in ("Currency", "SalesCurrency", "PurchaseCurrency", "CurrencyCode"):
            return "EUR"
        if name in ("Country", "Language", "Legislation"):
            return "NL"
        return f"{name} {j + 1}"
    if edm in ("Edm.Int32", "Edm.Int16"):
        return rng.randint(0, 50)
    if edm == "Edm.Byte":
        return rng.randint(0, 1)
    if edm == "Edm.Int64":
        return rng.randint(0, 10**6)
    if edm in ("Edm.Double", "Edm.Decimal", "Edm.Single"):
        return round(rng.uniform(0, 1000), 2)
    if edm == "Edm.Boolean":
        return rng.random() < 0.5
    if edm == "Edm.DateTime":
        return ms_date(ctx.history_start_ms + rng.randint(0, 700) * 86_400_000)
    return None  # Edm.Binary and anything unknown: Exact writes null on GET


def _identity_values(group: EntityGroup, i: int, rng: random.Random, ctx: GenContext) -> list:
    values = []
    varied = False
    for name, edm in zip(group.identity, group.identity_types):
        if name == "Division":
            values.append(ctx.division)
        elif edm == "Edm.Guid":
            values.append(guid(rng))
            varied = True
        elif edm == "Edm.String":
            values.append(str(i + 1))
            varied = True
        elif edm == "Edm.DateTime":
            values.append(ms_date(ctx.history_start_ms + i * 86_400_000))
            varied = True
        elif not varied:
            values.append(i + 1)
            varied = True
        else:
            values.append(1)
    return values


def generate(group: EntityGroup, count: int, ts_start: int, ctx: GenContext) -> list[list]:
    """``count`` rows for ``group`` with rowversions ``ts_start, ts_start + 1, ...``."""
    if count <= 0:
        return []
    rng = ctx.rng(group.key)
    templates = [
        [None if f.name == ROWVERSION else _generic_value(f.name, f.type, rng, ctx, j) for f in group.fields]
        for j in range(min(TEMPLATES, count))
    ]
    index = group.index
    id_slots = [index[name] for name in group.identity]
    ts_slot = index[ROWVERSION]
    modified = index.get("Modified")
    created = index.get("Created")
    rows = []
    for i in range(count):
        row = templates[i % len(templates)].copy()
        for slot, value in zip(id_slots, _identity_values(group, i, rng, ctx)):
            row[slot] = value
        ts = ts_start + i
        row[ts_slot] = ts
        if modified is not None and group.types["Modified"] == "Edm.DateTime":
            local = ctx.modified_ms(ts)
            row[modified] = ms_date(local)
            if created is not None and group.types["Created"] == "Edm.DateTime":
                row[created] = ms_date(local - (i % 30) * 86_400_000)
        rows.append(row)
    for parent, fk in group.parents:  # lines belong to generated headers, so $expand finds them all
        headers = ctx.rows_of(parent.key)
        if headers and len(parent.identity) == 1:
            id_slot, fk_slot = parent.index[parent.identity[0]], index[fk]
            for i, row in enumerate(rows):
                row[fk_slot] = headers[i % len(headers)][id_slot]
    domain = DOMAIN.get(group.primary.path)
    if domain is not None:
        domain(rows, _Setter(index), rng, ctx)
    return rows


class _Setter:
    """``put(row, name, value)`` that ignores fields an entity does not have."""

    def __init__(self, index: dict[str, int]) -> None:
        self.index = index

    def __call__(self, row: list, **values) -> None:
        index = self.index
        for name, value in values.items():
            slot = index.get(name)
            if slot is not None:
                row[slot] = value

    def get(self, row: list, name: str):
        slot = self.index.get(name)
        return None if slot is None else row[slot]


DOMAIN: dict[str, Callable] = {}


def domain(key: str):
    def register(fn):
        DOMAIN[key] = fn
        return fn
    return register


def _pick(ctx: GenContext, key: str) -> tuple[list[list], dict[str, int]]:
    return ctx.rows_of(key), ctx.index_of(key)


_COMPANY_A = ["Noord", "Zuid", "Oost", "West", "Delta", "Polder", "Molen", "Haven", "Duin", "Gracht"]
_COMPANY_B = ["Bouw", "Techniek", "Handel", "Logistiek", "Advies", "Zorg", "Media", "Food", "Energie", "Design"]
_COMPANY_C = ["B.V.", "N.V.", "VOF", "Groep", "& Zn."]
_CITIES = [("Amsterdam", "1011 AB"), ("Rotterdam", "3011 CD"), ("Utrecht", "3511 EF"), ("Delft", "2611 GH"),
           ("Groningen", "9711 JK"), ("Zwolle", "8011 LM"), ("Breda", "4811 NP"), ("Leiden", "2311 RS")]
_FIRST = ["Anna", "Bram", "Chantal", "Daan", "Eva", "Femke", "Gijs", "Hanna", "Ilse", "Joost", "Kees", "Lotte"]
_LAST = ["de Vries", "Jansen", "van Dijk", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "Bos"]

def account_code(n: int, pad: bool) -> str:
    return f"{n:>18}" if pad else str(n)


@domain("crm/Accounts")
def _accounts(rows, put, rng, ctx):
    for i, row in enumerate(rows):
        name = f"{_COMPANY_A[i % 10]} {_COMPANY_B[(i // 10) % 10]} {_COMPANY_C[(i // 100) % 5]}"
        if i >= 500:
            name += f" {i // 500}"
        city, postcode = _CITIES[rng.randrange(len(_CITIES))]
        put(row, Code=account_code(i + 1, ctx.pad_codes), Name=name, City=city, Postcode=postcode,
            Country="NL", AddressLine1=f"Kerkstraat {i + 1}", Email=f"info@account{i + 1}.example.nl",
            Phone=f"+31 20 {5550000 + i}", Website=f"www.account{i + 1}.example.nl", SearchCode=name[:10].upper(),
            Status="C" if i % 4 else "S", Type="A", IsSales=True, IsSupplier=i % 3 == 0, Blocked=False,
            VATNumber=f"NL{800000000 + i:09d}B01", ChamberOfCommerce=f"{30000000 + i}", Language="NL",
            SalesCurrency="EUR", PurchaseCurrency="EUR", Parent=None, MainContact=None)


@domain("crm/Contacts")
def _contacts(rows, put, rng, ctx):
    accounts, ai = _pick(ctx, "crm/Accounts")
    for i, row in enumerate(rows):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
        account = accounts[i % len(accounts)] if accounts else None
        put(row, FirstName=first, LastName=last, FullName=f"{first} {last}",
            Email=f"{first.lower()}.{i + 1}@example.nl",
            Account=account[ai["ID"]] if account else None,
            AccountName=account[ai["Name"]] if account else None,
            AccountIsCustomer=True, AccountIsSupplier=False)


@domain("crm/Addresses")
def _addresses(rows, put, rng, ctx):
    accounts, ai = _pick(ctx, "crm/Accounts")
    for i, row in enumerate(rows):
        account = accounts[i % len(accounts)] if accounts else None
        city, postcode = _CITIES[i % len(_CITIES)]
        put(row, Account=account[ai["ID"]] if account else None,
            AccountName=account[ai["Name"]] if account else None,
            AddressLine1=f"Dorpsstraat {i + 1}", City=city, Postcode=postcode, Country="NL", Type=1 + i % 4,
            Main=i < len(accounts))


@domain("logistics/Items")
def _items(rows, put, rng, ctx):
    for i, row in enumerate(rows):
        price = round(5 + rng.random() * 200, 2)
        put(row, Code=f"ART-{i + 1:05d}", Description=f"Artikel {i + 1}", IsSalesItem=True,
            IsPurchaseItem=i % 2 == 0, IsStockItem=i % 3 == 0, Unit="pc", UnitDescription="Stuk",
            CostPriceStandard=round(price * 0.6, 2), StandardSalesPrice=price, SalesVatCode="2")


_DOCUMENT_TYPES = [
    (10, "Sales invoice", 1, True), (20, "Purchase invoice", 1, True), (40, "Contract", 2, True),
    (55, "Letter", 2, True), (183, "General attachment", 5, True), (90, "Payment slip", 3, False),
]


@domain("documents/DocumentTypes")
def _document_types(rows, put, rng, ctx):
    for i, row in enumerate(rows):
        type_id, description, category, creatable = _DOCUMENT_TYPES[i % len(_DOCUMENT_TYPES)]
        if i >= len(_DOCUMENT_TYPES):
            type_id += 1000 * (i // len(_DOCUMENT_TYPES))
        put(row, ID=type_id, Description=description, TypeCategory=category, DocumentIsCreatable=creatable,
            DocumentIsUpdatable=creatable, DocumentIsDeletable=creatable, DocumentIsViewable=True)


@domain("documents/Documents")
def _documents(rows, put, rng, ctx):
    accounts, ai = _pick(ctx, "crm/Accounts")
    for i, row in enumerate(rows):
        type_id, description = (20, "Purchase invoice") if i % 2 else (10, "Sales invoice")
        account = accounts[i % len(accounts)] if accounts else None
        put(row, Subject=f"{description} {2024000 + i}", Type=type_id, TypeDescription=description,
            Account=account[ai["ID"]] if account else None,
            AccountCode=account[ai["Code"]] if account else None,
            AccountName=account[ai["Name"]] if account else None,
            Body=None, HasEmptyBody=True, Currency="EUR", AmountFC=round(rng.random() * 2000, 2),
            DocumentDate=ms_date(ctx.history_start_ms + i * 86_400_000), Category=None, Contact=None,
            Opportunity=None, Project=None, DocumentFolder=None)


@domain("documents/DocumentAttachments")
def _attachments(rows, put, rng, ctx):
    documents, di = _pick(ctx, "documents/Documents")
    for i, row in enumerate(rows):
        document = documents[i % len(documents)] if documents else None
        attachment_id = put.get(row, "ID")
        put(row, Document=document[di["ID"]] if document else None, FileName=f"scan-{i + 1:04d}.pdf",
            FileSize=float(1000 + rng.randrange(50_000)), Attachment=None,
            Url=f"{ctx.base_url}/docs/SysAttachment.aspx?ID={attachment_id}&_Division_={ctx.division}")


@domain("salesinvoice/SalesInvoices")
def _sales_invoices(rows, put, rng, ctx):
    accounts, ai = _pick(ctx, "crm/Accounts")
    for i, row in enumerate(rows):
        account = accounts[i % len(accounts)] if accounts else None
        amount = round(100 + rng.random() * 5000, 2)
        vat = round(amount * 0.21, 2)
        gross = round(amount + vat, 2)  # what the ledger books: net plus VAT, to the cent
        account_id = account[ai["ID"]] if account else None
        name = account[ai["Name"]] if account else None
        put(row, InvoiceNumber=24000001 + i, InvoiceTo=account_id, OrderedBy=account_id, DeliverTo=account_id,
            InvoiceToName=name, OrderedByName=name, DeliverToName=name, Currency="EUR",
            AmountFCExclVat=amount, VATAmountFC=vat, VATAmountDC=vat, AmountFC=gross, AmountDC=gross, Status=50, StatusDescription="Processed", Type=8020,
            TypeDescription="Sales invoice", Journal="60", JournalDescription="Verkoopboek",
            Description=f"Factuur {24000001 + i}",
            InvoiceDate=ms_date(ctx.history_start_ms + i * 86_400_000))


@domain("salesinvoice/SalesInvoiceLines")
def _sales_invoice_lines(rows, put, rng, ctx):
    _split_lines(rows, put, rng, ctx, "salesinvoice/SalesInvoices", "InvoiceID", "AmountFCExclVat")


@domain("salesorder/SalesOrders")
def _sales_orders(rows, put, rng, ctx):
    accounts, ai = _pick(ctx, "crm/Accounts")
    for i, row in enumerate(rows):
        account = accounts[(i * 7) % len(accounts)] if accounts else None
        amount = round(50 + rng.random() * 3000, 2)
        put(row, OrderNumber=1000 + i, OrderedBy=account[ai["ID"]] if account else None,
            OrderedByName=account[ai["Name"]] if account else None, Currency="EUR",
            AmountFCExclVat=amount, AmountFC=round(amount * 1.21, 2), AmountDC=round(amount * 1.21, 2),
            Status=12, Description=f"Order {1000 + i}", OrderDate=ms_date(ctx.history_start_ms + i * 86_400_000))


@domain("salesorder/SalesOrderLines")
def _sales_order_lines(rows, put, rng, ctx):
    _split_lines(rows, put, rng, ctx, "salesorder/SalesOrders", "OrderID", "AmountFCExclVat")


@domain("sync/Deleted")
def _deleted(rows, put, rng, ctx):
    """A little delete history (within the two months Exact keeps it)."""
    types = [1, 2, 5, 6, 4, 7, 9, 13]
    for i, row in enumerate(rows):
        put(row, EntityType=types[i % len(types)], EntityKey=guid(rng), DeletedBy=ctx.user_id,
            DeletedDate=ms_date(ctx.today_ms - (i + 1) * 86_400_000))


def _split_lines(rows, put, rng, ctx, parent_key, fk, amount_field):
    """Spread the lines over the headers and split each header's amount across them."""
    parents, pi = _pick(ctx, parent_key)
    items, ii = _pick(ctx, "logistics/Items")
    gls, gi = _pick(ctx, "financial/GLAccounts")
    revenue = next((g for g in gls if g[gi["Code"]] == "8000"), gls[0] if gls else None)
    if not parents:
        return
    buckets: list[list[list]] = [[] for _ in parents]
    for i, row in enumerate(rows):
        buckets[i % len(parents)].append(row)
    for parent, lines in zip(parents, buckets):
        total = parent[pi[amount_field]] or 0.0
        share = round(total / max(len(lines), 1), 2)
        for number, row in enumerate(lines, start=1):
            amount = share if number < len(lines) else round(total - share * (len(lines) - 1), 2)
            item = items[rng.randrange(len(items))] if items else None
            put(row, **{fk: parent[pi[fk]]}, LineNumber=number, Quantity=1.0, UnitPrice=amount, NetPrice=amount,
                AmountFC=amount, AmountDC=amount, VATAmountFC=round(amount * 0.21, 2), VATCode="2",
                Item=item[ii["ID"]] if item else None, ItemCode=item[ii["Code"]] if item else None,
                ItemDescription=item[ii["Description"]] if item else None,
                Description=item[ii["Description"]] if item else "Regel",
                GLAccount=revenue[gi["ID"]] if revenue else None, Division=ctx.division)


# The general ledger (chart, classifications, journals, periods, entries, open items) has its own
# module; importing it registers its generators here.
from . import ledger as _ledger  # noqa: E402,F401
