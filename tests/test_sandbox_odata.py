"""Point 5: OData envelopes, paging, query options, dates, errors, the sync API and the system endpoints."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest

FAST = {"minutely_limit": 100000, "daily_limit": 100000}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def big(sandbox_factory, sandbox_client):
    handle = sandbox_factory(volumes={"accounts": 130, "transaction_lines": 2500}, **FAST)
    return handle, sandbox_client(handle)


def test_standard_pages_of_60_to_the_last_page(big):
    handle, api = big
    params = {"$select": "ID,Code,Name", "$filter": "Blocked eq false"}
    pages = api.pages(101, "crm/Accounts", params)
    assert [len(p["results"]) for p in pages] == [60, 60, 10]
    assert "__next" not in pages[-1]
    first_next = pages[0]["__next"]
    assert first_next.startswith(handle.url + "/api/v1/101/crm/Accounts?")
    query = parse_qs(urlparse(first_next).query)
    assert query["$select"] == ["ID,Code,Name"] and query["$filter"] == ["Blocked eq false"]
    last_id = pages[0]["results"][-1]["ID"]
    assert query["$skiptoken"] == [f"guid'{last_id}'"]
    ids = [row["ID"] for page in pages for row in page["results"]]
    assert len(set(ids)) == 130 and ids == sorted(ids)
    row = pages[0]["results"][0]
    assert set(row) == {"__metadata", "ID", "Code", "Name"}
    assert row["__metadata"] == {"uri": f"{handle.url}/api/v1/101/crm/Accounts(guid'{row['ID']}')",
                                 "type": "Exact.Web.Api.Models.Crm.Account"}


def test_sync_pages_of_1000_ordered_by_timestamp(big):
    handle, api = big
    pages = api.pages(101, "sync/Financial/TransactionLines",
                      {"$select": "Timestamp,ID,AmountDC", "$filter": "Timestamp gt 1L"})
    assert [len(p["results"]) for p in pages] == [1000, 1000, 500]
    stamps = [int(r["Timestamp"]) for p in pages for r in p["results"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 2500
    assert all(isinstance(r["Timestamp"], str) for r in pages[0]["results"])  # Int64 as a string
    skip = parse_qs(urlparse(pages[0]["__next"]).query)["$skiptoken"]
    assert skip == [f"{stamps[999]}L"]
    # Without the L suffix and from a bookmark in the middle.
    tail = api.pages(101, "sync/Financial/TransactionLines",
                     {"$select": "Timestamp", "$filter": f"Timestamp gt {stamps[2399]}"})
    assert [int(r["Timestamp"]) for r in tail[0]["results"]] == stamps[2400:]


def test_bulk_needs_select_and_pages_of_1000(big):
    handle, api = big
    refused = api.get(101, "bulk/Financial/TransactionLines")
    assert refused.status_code == 400
    assert refused.json() == {"error": {"code": "", "message": {
        "lang": "", "value": "Please add a $select or a $top=1 statement to the query string."}}}
    assert api.get(101, "bulk/Financial/TransactionLines", {"$top": "1"}).status_code == 200
    pages = api.pages(101, "bulk/Financial/TransactionLines", {"$select": "ID,GLAccount"})
    assert [len(p["results"]) for p in pages] == [1000, 1000, 500]
    assert parse_qs(urlparse(pages[0]["__next"]).query)["$skiptoken"][0].startswith("guid'")


def test_top(big):
    handle, api = big
    body = api.get(101, "crm/Accounts", {"$select": "ID", "$filter": "Blocked eq false", "$top": "5"}).json()["d"]
    assert len(body["results"]) == 5 and "__next" not in body
    pages = api.pages(101, "crm/Accounts", {"$select": "ID", "$filter": "Blocked eq false", "$top": "70"})
    assert [len(p["results"]) for p in pages] == [60, 10]
    assert parse_qs(urlparse(pages[0]["__next"]).query)["$top"] == ["10"]


def _ms(value):
    return int(value[6:-2])


JAN_2023 = int(datetime(2023, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
JAN_2030 = int(datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize("expression,expected", [
    ("trim(Code) eq '7'", lambda r: r["Code"].strip() == "7"),
    ("Code eq '7'", lambda r: False),  # codes are padded to 18 characters, as at Exact
    ("Code eq '                 7'", lambda r: r["Code"] == " " * 17 + "7"),
    ("(trim(Code) eq '7' or trim(Code) eq '8' or trim(Code) eq '9')", lambda r: r["Code"].strip() in ("7", "8", "9")),
    ("substringof('bouw', Name) eq true", lambda r: "bouw" in r["Name"].lower()),
    ("substringof('BOUW', Name) eq true and IsSupplier eq true", lambda r: "Bouw" in r["Name"] and r["IsSupplier"]),
    ("not (Blocked eq false)", lambda r: r["Blocked"] is not False),
    ("Blocked eq false and (Status eq 'C' or Status eq 'S')", lambda r: r["Status"] in ("C", "S")),
    ("Status ne 'C'", lambda r: r["Status"] != "C"),
    ("Modified ge datetime'2023-01-01T00:00:00' and Modified lt datetime'2030-01-01'",
     lambda r: JAN_2023 <= _ms(r["Modified"]) < JAN_2030),
    ("Modified lt datetime'2023-01-01'", lambda r: _ms(r["Modified"]) < JAN_2023),
    ("Blocked eq false and (PurchaseLeadDays ge 10 or PurchaseLeadDays eq null)",
     lambda r: r["PurchaseLeadDays"] is None or r["PurchaseLeadDays"] >= 10),
    ("Name eq 'Noord Bouw B.V.'", lambda r: r["Name"] == "Noord Bouw B.V."),
    ("Name eq 'noord bouw b.v.'", lambda r: r["Name"] == "Noord Bouw B.V."),  # case-insensitive collation
    ("startswith(Name, 'Zuid') and endswith(Name, 'N.V.')", lambda r: r["Name"].startswith("Zuid")
     and r["Name"].endswith("N.V.")),
])
def test_filter_operators(big, expression, expected):
    handle, api = big
    pages = api.pages(101, "crm/Accounts", {"$select": "ID,Code,Name", "$filter": expression})
    got = sorted(r["ID"] for p in pages for r in p["results"])
    want = sorted(r["ID"] for r in handle.records(101, "crm/Accounts") if expected(r))
    assert got == want


def test_filter_literals_guid_int64_escaped_quotes(big):
    handle, api = big
    account = api.get(101, "crm/Accounts", {"$select": "ID,Name", "$filter": "trim(Code) eq '12'"}).json()
    account_id = account["d"]["results"][0]["ID"]
    upper = api.get(101, "crm/Accounts", {"$select": "ID", "$filter": f"ID eq guid'{account_id.upper()}'"})
    assert [r["ID"] for r in upper.json()["d"]["results"]] == [account_id]
    handle.insert(101, "crm/Accounts", {"Name": "O'Brien & Zn.", "Code": "999"})
    quoted = api.get(101, "crm/Accounts", {"$select": "Name,Code", "$filter": "Name eq 'O''Brien & Zn.'"})
    assert [(r["Name"], r["Code"]) for r in quoted.json()["d"]["results"]] == [("O'Brien & Zn.", " " * 15 + "999")]
    lines = api.get(101, "sync/Financial/TransactionLines", {"$select": "Timestamp", "$filter": "Timestamp gt 1000000L"})
    assert lines.status_code == 200


@pytest.mark.parametrize("expression,fragment", [
    ("Name eq", "Expression expected"),
    ("Name eq 'open", "unterminated string"),
    ("Nope eq 1", "No property 'Nope' exists"),
    ("ID eq '123'", "incompatible"),
    ("Code eq 7", "incompatible"),
    ("frob(Name) eq true", "Unknown function"),
    ("Name", "expected to be 'System.Boolean'"),
    ("BankAccounts/ID eq guid'00000000-0000-0000-0000-000000000000'", "navigation"),
])
def test_filter_errors_are_exact_errors(big, expression, fragment):
    handle, api = big
    response = api.get(101, "crm/Accounts", {"$filter": expression})
    assert response.status_code == 400
    assert fragment.lower() in response.json()["error"]["message"]["value"].lower()


def test_select_errors_and_unknown_options(big):
    handle, api = big
    bad = api.get(101, "crm/Accounts", {"$select": "ID,Nope", "$filter": "Blocked eq false"})
    assert bad.status_code == 400 and "Nope" in bad.json()["error"]["message"]["value"]
    odd = api.get(101, "crm/Accounts", {"$frob": "1", "$filter": "Blocked eq false"})
    assert odd.status_code == 400 and "system-reserved" in odd.json()["error"]["message"]["value"]
    skip = api.get(101, "crm/Accounts", {"$skip": "10", "$filter": "Blocked eq false"})
    assert skip.status_code == 400


def test_mandatory_filter_on_accounts_and_items(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    for path in ("crm/Accounts", "logistics/Items"):
        refused = api.get(101, path, {"$select": "ID"})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"]["value"].startswith(
            "This endpoint has mandatory filtering applied. A GET request for this endpoint must have a $filter "
            "parameter with one of the following fields in the url:")
    assert api.get(101, "crm/Accounts", {"$select": "ID", "$filter": "Name ne null"}).status_code == 200
    assert api.get(101, "logistics/Items", {"$select": "ID", "$filter": "trim(Code) eq 'ART-00001'"}).status_code == 200
    # The sync and bulk twins have no such rule.
    assert api.get(101, "sync/CRM/Accounts", {"$select": "ID,Timestamp"}).status_code == 200


def test_expand_lines_and_deferred_navigation(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    expanded = api.get(101, "salesinvoice/SalesInvoices", {
        "$select": "InvoiceID,AmountFCExclVat,SalesInvoiceLines/AmountFC,SalesInvoiceLines/InvoiceID",
        "$expand": "SalesInvoiceLines"}).json()["d"]["results"]
    assert len(expanded) == 15
    for invoice in expanded:
        lines = invoice["SalesInvoiceLines"]["results"]
        assert lines and all(line["InvoiceID"] == invoice["InvoiceID"] for line in lines)
        assert set(lines[0]) == {"__metadata", "AmountFC", "InvoiceID"}
        assert round(sum(line["AmountFC"] for line in lines), 2) == invoice["AmountFCExclVat"]
    plain = api.get(101, "salesinvoice/SalesInvoices", {"$select": "InvoiceID,SalesInvoiceLines"}).json()
    first = plain["d"]["results"][0]
    assert first["SalesInvoiceLines"] == {"__deferred": {"uri": first["__metadata"]["uri"] + "/SalesInvoiceLines"}}


def test_single_entity_count_and_inlinecount(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    documents = api.get(101, "documents/Documents", {"$select": "ID,Subject"}).json()["d"]["results"]
    one = api.get(101, f"documents/Documents(guid'{documents[3]['ID']}')", {"$select": "ID,Subject"})
    assert one.status_code == 200 and one.json() == {"d": documents[3]}
    missing = api.get(101, "documents/Documents(guid'00000000-0000-0000-0000-000000000000')")
    assert missing.status_code == 404 and "error" in missing.json()
    count = api.get(101, "documents/Documents/$count", {"$filter": "Type eq 10"})
    assert count.status_code == 200 and count.text == "8"
    counted = api.get(101, "documents/Documents", {"$select": "ID", "$inlinecount": "allpages"}).json()["d"]
    assert counted["__count"] == "15"


def test_dates_are_amsterdam_wall_clock(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    # 12:00 UTC in July is 14:00 in Amsterdam (CEST); in January 13:00 (CET).
    summer, winter = sandbox.insert(101, "crm/Accounts", {"Name": "Zomer", "StartDate": "2024-07-01T12:00:00Z"},
                                    {"Name": "Winter", "StartDate": "2024-01-15T12:00:00Z"})
    for record, local in ((summer, datetime(2024, 7, 1, 14)), (winter, datetime(2024, 1, 15, 13))):
        expected = int(local.replace(tzinfo=timezone.utc).timestamp() * 1000)
        row = api.get(101, f"crm/Accounts(guid'{record['ID']}')", {"$select": "StartDate"}).json()["d"]
        assert row["StartDate"] == f"/Date({expected})/"
    # A datetime literal in $filter is Amsterdam local time too.
    hit = api.get(101, "crm/Accounts", {"$select": "Name", "$filter": "StartDate eq datetime'2024-07-01T14:00:00'"})
    assert [r["Name"] for r in hit.json()["d"]["results"]] == ["Zomer"]
    # Modified of a fresh change is "now" in Amsterdam time.
    modified = int(re.match(r"/Date\((\d+)\)/", sandbox.records(101, "crm/Accounts")[-1]["Modified"]).group(1))
    now = datetime.now(timezone.utc)
    from zoneinfo import ZoneInfo

    offset = now.astimezone(ZoneInfo("Europe/Amsterdam")).utcoffset().total_seconds()
    assert abs(modified / 1000 - (now.timestamp() + offset)) < 5


def test_sync_filter_only_timestamp(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    refused = api.get(101, "sync/Financial/TransactionLines",
                      {"$select": "ID", "$filter": "Timestamp gt 1L and Type eq 20"})
    assert refused.status_code == 400
    nosel = api.get(101, "sync/Financial/TransactionLines", {"$filter": "Timestamp gt 1L"})
    assert nosel.status_code == 400  # strict reading: sync wants $select like bulk (knob)
    deleted = api.get(101, "sync/Deleted", {"$select": "Timestamp,EntityKey,EntityType",
                                            "$filter": "Timestamp gt 1L and EntityType eq 2"})
    assert deleted.status_code == 200
    assert {r["EntityType"] for r in deleted.json()["d"]["results"]} <= {2}


def test_sync_timestamp_function(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    old, mid = sandbox.insert(101, "financialtransaction/TransactionLines",
                              {"Description": "old", "Modified": "2025-03-01T10:00:00"},
                              {"Description": "mid", "Modified": "2025-06-01T10:00:00"})
    params = {"modified": "datetime'2025-05-01T00:00:00'", "endPoint": "'TransactionLines'"}
    body = api.get(101, "read/sync/Sync/SyncTimestamp", params).json()
    row = body["d"][0]  # a function: a bare array
    assert row["API"] == "TransactionLines" and row["TimeStampAsBigInt"] == str(old["Timestamp"])
    assert row["Modified"] == "/Date(1746057600000)/"
    first = api.get(101, "read/sync/Sync/SyncTimestamp",
                    {"modified": "datetime'2000-01-01'", "endPoint": "'TransactionLines'"}).json()
    assert first["d"][0]["TimeStampAsBigInt"] == "1"
    assert api.get(101, "read/sync/Sync/SyncTimestamp", {"modified": "datetime'2025-05-01'"}).status_code == 400
    sandbox.delete(101, "financialtransaction/TransactionLines", mid["ID"])
    deleted = api.get(101, "read/sync/Sync/SyncTimestamp",
                      {"modified": "datetime'2999-01-01'", "endPoint": "'Deleted'"}).json()
    assert int(deleted["d"][0]["TimeStampAsBigInt"]) > mid["Timestamp"]


def test_current_me_and_divisions(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    me = api.get(None, "current/Me", {"$select": "UserID,CurrentDivision,FullName,Email,UserName"})
    assert me.status_code == 200
    results = me.json()["d"]["results"]
    assert len(results) == 1 and results[0]["CurrentDivision"] == 101
    assert set(results[0]) == {"__metadata", "UserID", "CurrentDivision", "FullName", "Email", "UserName"}
    assert results[0]["__metadata"]["type"] == "Exact.Web.Api.Models.System.Me"
    assert not any(h.lower().startswith("x-ratelimit") for h in me.headers)
    api.get(102, "documents/Documents", {"$select": "ID"})
    assert api.get(None, "current/Me").json()["d"]["results"][0]["CurrentDivision"] == 102
    divisions = api.get(101, "system/Divisions", {"$select": "Code,Description,Current,DivisionMoveDate"}).json()
    rows = divisions["d"]["results"]
    assert [r["Code"] for r in rows] == [101, 102, 103]
    assert [r["Current"] for r in rows] == [True, False, False]
    assert all(r["DivisionMoveDate"] is None for r in rows)


def test_accept_json_required_and_unknown_endpoint(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    atom = api.session.get(api.url(101, "documents/Documents"), headers={"Accept": "*/*"})
    assert atom.status_code == 406
    unknown = api.get(101, "crm/Nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["message"]["value"]


def test_orderby_pages_stably(big):
    handle, api = big
    pages = api.pages(101, "crm/Accounts", {"$select": "ID,Name", "$filter": "Blocked eq false",
                                            "$orderby": "Name desc"})
    names = [(r["Name"], r["ID"]) for p in pages for r in p["results"]]
    assert len(names) == 130 and len(set(names)) == 130
    assert [n for n, _ in names] == sorted((n for n, _ in names), reverse=True)


def test_long_urls_are_refused(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    clause = " or ".join(f"trim(Code) eq '{n}'" for n in range(400))
    response = api.get(101, "crm/Accounts", {"$select": "ID", "$filter": clause})
    assert len(response.request.url) > 6000
    assert response.status_code == 400 and "6000" in response.json()["error"]["message"]["value"]
