"""Point 1: deterministic generated data per division, relations, volume knobs, every endpoint served."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from exact_sandbox.metadata import Registry

FAST = {"minutely_limit": 100000, "daily_limit": 100000}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DATE = re.compile(r"^/Date\(-?\d+\)/$")


def test_same_seed_same_data_other_seed_or_division_other_data(sandbox_factory):
    one, two, other = sandbox_factory(seed=7), sandbox_factory(seed=7), sandbox_factory(seed=8)
    for path in ("crm/Accounts", "financialtransaction/TransactionLines", "documents/DocumentAttachments"):
        assert _strip_urls(one.records(101, path)) == _strip_urls(two.records(101, path))
        assert one.records(101, path) != other.records(101, path)
    ids_101 = {r["ID"] for r in one.records(101, "crm/Accounts")}
    ids_102 = {r["ID"] for r in one.records(102, "crm/Accounts")}
    assert ids_101 and not ids_101 & ids_102
    assert {r["Division"] for r in one.records(102, "crm/Accounts")} == {102}


def _strip_urls(records):
    return [{k: v for k, v in r.items() if k != "Url"} for r in records]  # Url carries the port


def test_relations(sandbox):
    accounts = {r["ID"]: r for r in sandbox.records(101, "crm/Accounts")}
    gl = {r["ID"]: r for r in sandbox.records(101, "financial/GLAccounts")}
    lines = sandbox.records(101, "financialtransaction/TransactionLines")
    entries = defaultdict(float)
    for line in lines:
        assert line["GLAccount"] in gl and line["GLAccountCode"] == gl[line["GLAccount"]]["Code"]
        if line["Account"]:
            assert accounts[line["Account"]]["Name"] == line["AccountName"]
        entries[line["EntryID"]] += line["AmountDC"]
    assert any(line["Account"] for line in lines)
    assert all(abs(total) < 0.01 for total in entries.values())  # every entry balances
    documents = {r["ID"] for r in sandbox.records(101, "documents/Documents")}
    attachments = sandbox.records(101, "documents/DocumentAttachments")
    assert {a["Document"] for a in attachments} == documents  # every document has an attachment
    assert all(a["Url"].startswith(sandbox.url + "/docs/SysAttachment.aspx?ID=") and a["Attachment"] is None
               for a in attachments)
    invoices = {r["InvoiceID"] for r in sandbox.records(101, "salesinvoice/SalesInvoices")}
    invoice_lines = sandbox.records(101, "salesinvoice/SalesInvoiceLines")
    assert {line["InvoiceID"] for line in invoice_lines} == invoices
    contacts = sandbox.records(101, "crm/Contacts")
    assert all(c["Account"] in accounts for c in contacts)


def test_volume_knob_serves_the_volume(sandbox_factory, sandbox_client):
    # How fast it starts is bench/bench_sandbox.py's business, not an assertion here.
    handle = sandbox_factory(volumes={"transaction_lines": 100_000}, **FAST)
    api = sandbox_client(handle)
    first = api.get(101, "sync/Financial/TransactionLines", {"$select": "ID,Timestamp"})
    assert first.status_code == 200 and len(first.json()["d"]["results"]) == 1000
    count = api.get(101, "financialtransaction/TransactionLines/$count")
    assert count.text == "100000"


def test_unknown_volume_entity_is_refused():
    from exact_sandbox import Sandbox

    with pytest.raises(KeyError):
        Sandbox(volumes={"no/Such": 3})


def _gettable(registry):
    for endpoint in registry.endpoints.values():
        # Fieldless functions (users/UserHasRights) have nothing to select.
        if endpoint.allows("GET") and endpoint.data_fields \
                and endpoint.path != "read/sync/Sync/SyncTimestamp":
            yield endpoint


def test_every_gettable_endpoint_serves_typed_rows(sandbox_factory, sandbox_client):
    handle = sandbox_factory(**FAST)
    api = sandbox_client(handle)
    registry = Registry.shared()
    checked = 0
    for endpoint in _gettable(registry):
        fields = [f for f in endpoint.data_fields]
        params = {"$select": ",".join(f.name for f in fields)}
        if endpoint.mandatory_filter_fields:
            params["$filter"] = "ID ne null"
        division = None if not endpoint.has_division else 102
        response = api.get(division, endpoint.path, params)
        assert response.status_code == 200, (endpoint.path, response.text[:300])
        body = response.json()["d"]
        # read/ functions answer a bare array (REFERENCE.md 14.4), collections {"results": [...]}
        assert isinstance(body, list) == endpoint.path.startswith("read/"), endpoint.path
        rows = body if isinstance(body, list) else body["results"]
        assert rows, endpoint.path
        for row in rows:
            assert set(row) == {"__metadata"} | {f.name for f in fields}, endpoint.path
            for f in fields:
                _check_type(endpoint.path, f.name, f.type, row[f.name])
            if "Division" in row and endpoint.field_map["Division"].type == "Edm.Int32" and division:
                assert row["Division"] == division, endpoint.path
        checked += 1
    assert checked > 440


def _check_type(path, name, edm, value):
    if value is None:
        return
    ok = {
        "Edm.Guid": lambda v: isinstance(v, str) and GUID.match(v),
        "Edm.String": lambda v: isinstance(v, str),
        "Edm.DateTime": lambda v: isinstance(v, str) and DATE.match(v),
        "Edm.Int64": lambda v: isinstance(v, str) and v.lstrip("-").isdigit(),
        "Edm.Int32": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Edm.Int16": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Edm.Byte": lambda v: isinstance(v, int) and 0 <= v <= 255,
        "Edm.Double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "Edm.Boolean": lambda v: isinstance(v, bool),
        "Edm.Binary": lambda v: False,  # always null on GET
    }[edm]
    assert ok(value), (path, name, edm, value)
