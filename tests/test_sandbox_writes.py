"""Point 6: POST, PUT and DELETE where the metadata allows them, refused as Exact refuses them otherwise."""

from __future__ import annotations

import base64

import pytest

DOCS = "documents/Documents"
ATTACH = "documents/DocumentAttachments"
STREAM_ERROR = "Error processing request stream. The request should be a valid top-level resource object."


def _message(response) -> str:
    return response.json()["error"]["message"]["value"]


@pytest.fixture
def api(sandbox, sandbox_client):
    return sandbox_client(sandbox)


def test_post_document_returns_201_with_only_the_key_unless_asked(sandbox, api):
    created = api.post(101, DOCS, {"Subject": "Invoice 42", "Type": 20})
    assert created.status_code == 201
    body = created.json()["d"]
    assert body["ID"] and body["Subject"] is None and body["Type"] is None
    assert created.headers["Location"] == body["__metadata"]["uri"]
    full = api.post(101, DOCS, {"Subject": "Invoice 43", "Type": 20, "DocumentDate": "2024-03-01T00:00:00"},
                    headers={"Prefer": "return=representation"}).json()["d"]
    assert full["Subject"] == "Invoice 43" and full["TypeDescription"] == "Purchase invoice"
    assert full["DocumentDate"] == "/Date(1709251200000)/" and full["Division"] == 101
    stored = api.get(101, f"{DOCS}(guid'{body['ID']}')", {"$select": "Subject,Type"}).json()["d"]
    assert (stored["Subject"], stored["Type"]) == ("Invoice 42", 20)
    synced = api.get(101, "sync/Documents/Documents", {"$select": "ID,Timestamp", "$filter": "Timestamp gt 1L"})
    assert body["ID"] in [r["ID"] for r in synced.json()["d"]["results"]]


@pytest.mark.parametrize("body,missing", [({"Type": 20}, "Subject"), ({"Subject": "x"}, "Type"),
                                          ({"Subject": "", "Type": 20}, "Subject")])
def test_document_mandatory_fields(api, body, missing):
    response = api.post(101, DOCS, body)
    assert response.status_code == 500 and missing in _message(response)  # Exact: "Verplicht: Serie"


def test_document_type_must_exist_and_be_creatable(api):
    assert api.post(101, DOCS, {"Subject": "x", "Type": 12345}).status_code == 400
    assert api.post(101, DOCS, {"Subject": "x", "Type": 90}).status_code == 400  # not creatable


def test_bad_json_and_unknown_properties(api):
    bad = api.session.post(api.url(101, DOCS), data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and _message(bad) == STREAM_ERROR
    array = api.post(101, DOCS, [{"Subject": "x"}])
    assert array.status_code == 400 and _message(array) == STREAM_ERROR
    unknown = api.post(101, DOCS, {"Subject": "x", "Type": 20, "Colour": "red"})
    assert unknown.status_code == 400
    assert _message(unknown) == ("The property 'Colour' does not exist on type 'Exact.Web.Api.Models.Documents."
                                 "Document'. Make sure to only use property names that are defined by the type.")
    wrong_type = api.post(101, DOCS, {"Subject": "x", "Type": 20, "Account": "not-a-guid"})
    assert wrong_type.status_code == 400 and "System.Guid" in _message(wrong_type)


def test_attachment_upload_and_download(sandbox, api):
    document = api.post(101, DOCS, {"Subject": "With file", "Type": 20}).json()["d"]["ID"]
    content = b"%PDF-1.4 hello" * 100
    created = api.post(101, ATTACH, {"Attachment": base64.b64encode(content).decode(), "Document": document,
                                     "FileName": "hello.pdf"}, headers={"Prefer": "return=representation"})
    assert created.status_code == 201
    body = created.json()["d"]
    assert body["Attachment"] is None and body["FileSize"] == len(content) and body["FileName"] == "hello.pdf"
    listed = api.get(101, ATTACH, {"$select": "ID,Attachment,FileName,FileSize,Url,Document",
                                   "$filter": f"Document eq guid'{document}'"}).json()["d"]["results"]
    assert [r["ID"] for r in listed] == [body["ID"]] and listed[0]["Attachment"] is None
    downloaded = api.session.get(listed[0]["Url"] + "&Download=1")
    assert downloaded.status_code == 200 and downloaded.content == content
    assert sandbox.admin("GET", f"/attachments/101/{body['ID']}") == content


@pytest.mark.parametrize("missing", ["Attachment", "Document", "FileName"])
def test_attachment_mandatory_fields(api, missing):
    document = api.post(101, DOCS, {"Subject": "x", "Type": 20}).json()["d"]["ID"]
    body = {"Attachment": base64.b64encode(b"abc").decode(), "Document": document, "FileName": "a.txt"}
    del body[missing]
    response = api.post(101, ATTACH, body)
    assert response.status_code == 500 and missing in _message(response)  # Exact: "Verplicht: Serie"


def test_attachment_put_is_refused_and_size_is_limited(sandbox, api):
    document = api.post(101, DOCS, {"Subject": "x", "Type": 20}).json()["d"]["ID"]
    small = api.post(101, ATTACH, {"Attachment": base64.b64encode(b"abc").decode(), "Document": document,
                                   "FileName": "a.txt"}).json()["d"]["ID"]
    put = api.put(101, f"{ATTACH}(guid'{small}')", {"FileName": "b.txt"})
    assert put.status_code == 405 and "error" in put.json()
    big = base64.b64encode(b"x" * (10 * 1024 * 1024 + 1)).decode()
    refused = api.post(101, ATTACH, {"Attachment": big, "Document": document, "FileName": "big.bin"})
    assert refused.status_code == 400 and "too large" in _message(refused)
    exact_limit = base64.b64encode(b"x" * (10 * 1024 * 1024)).decode()
    assert api.post(101, ATTACH, {"Attachment": exact_limit, "Document": document,
                                  "FileName": "ten.bin"}).status_code == 201
    sandbox.set(binary_too_large_status=413, max_binary_bytes=10)
    assert api.post(101, ATTACH, {"Attachment": base64.b64encode(b"x" * 11).decode(), "Document": document,
                                  "FileName": "c.bin"}).status_code == 413


def test_put_updates_and_delete_logs(sandbox, api):
    document = api.post(101, DOCS, {"Subject": "before", "Type": 20}).json()["d"]["ID"]
    stamp = sandbox.records(101, DOCS)[-1]["Timestamp"]
    put = api.put(101, f"{DOCS}(guid'{document}')", {"Subject": "after"})
    assert put.status_code == 204 and put.content == b""
    record = next(r for r in sandbox.records(101, DOCS) if r["ID"] == document)
    assert record["Subject"] == "after" and record["Type"] == 20 and record["Timestamp"] > stamp
    missing = api.put(101, f"{DOCS}(guid'00000000-0000-0000-0000-000000000001')", {"Subject": "x"})
    assert missing.status_code == 404
    deleted = api.delete(101, f"{DOCS}(guid'{document}')")
    assert deleted.status_code == 204
    assert api.delete(101, f"{DOCS}(guid'{document}')").status_code == 404
    log = api.get(101, "sync/Deleted", {"$select": "EntityKey,EntityType", "$filter": "Timestamp gt 1L"})
    assert {"EntityKey": document, "EntityType": 6} in [
        {k: r[k] for k in ("EntityKey", "EntityType")} for r in log.json()["d"]["results"]]


def test_methods_the_metadata_does_not_allow(api):
    assert api.post(101, "sync/Financial/TransactionLines", {"Description": "x"}).status_code == 405
    assert api.post(101, "financialtransaction/TransactionLines", {"Description": "x"}).status_code == 405
    assert api.delete(101, "financialtransaction/TransactionLines(guid'00000000-0000-0000-0000-000000000001')"
                      ).status_code == 405


def test_account_lookup_filters_the_target_uses(api):
    for code in ("A1", "B'2"):
        assert api.post(101, "crm/Accounts", {"Name": f"Lookup {code}", "Code": code}).status_code == 201
    found = api.get(101, "crm/Accounts", {"$select": "ID,Code,Name",
                                          "$filter": "(trim(Code) eq 'A1' or trim(Code) eq 'B''2')"})
    assert sorted(r["Name"] for r in found.json()["d"]["results"]) == ["Lookup A1", "Lookup B'2"]
    assert all(len(r["Code"]) == 18 for r in found.json()["d"]["results"])
    assert api.post(101, "crm/Accounts", {"Code": "C3"}).status_code == 500  # Exact: "Verplicht: Name"


def test_business_refusals_are_500_with_exacts_message_and_write_nothing(sandbox, api):
    first = api.post(101, "crm/Accounts", {"Name": "Owner BV", "Code": "DUP1"}).json()["d"]["ID"]
    again = api.post(101, "crm/Accounts", {"Name": "Copycat BV", "Code": " dup1"})
    assert again.status_code == 500 and _message(again) == "Gegeven bestaat reeds."
    assert [a["Name"] for a in sandbox.records(101, "crm/Accounts") if a["Code"].strip() == "DUP1"] == ["Owner BV"]
    other = api.post(101, "crm/Accounts", {"Name": "Other BV", "Code": "DUP2"}).json()["d"]["ID"]
    assert api.put(101, f"crm/Accounts(guid'{other}')", {"Code": "DUP1"}).status_code == 500
    api.post(101, "crm/Contacts", {"Account": first, "FirstName": "Ann", "LastName": "Used"})
    in_use = api.delete(101, f"crm/Accounts(guid'{first}')")
    assert in_use.status_code == 500 and _message(in_use) == "Can't delete: Account DUP1 - Used in: Contacts"
    assert api.delete(101, f"crm/Accounts(guid'{other}')").status_code == 204
    sandbox.set(business_refusal_status=400)
    assert api.post(101, "crm/Accounts", {"Name": "Copycat BV", "Code": "DUP1"}).status_code == 400


def test_rights_empty_the_list_and_user_has_rights_says_so(sandbox, api):
    api.post(101, "crm/Accounts", {"Name": "Visible BV", "Code": "R0"})
    reads = {"crm/Accounts": {"$select": "ID", "$filter": "trim(Code) eq 'R0'"},
             "sync/CRM/Accounts": {"$select": "ID,Timestamp", "$filter": "Timestamp gt 1L"}}
    assert all(api.get(101, path, params).json()["d"]["results"] for path, params in reads.items())
    sandbox.set(no_rights="crm/Accounts")
    for path, params in reads.items():
        answer = api.get(101, path, params)
        assert answer.status_code == 200 and answer.json()["d"]["results"] == []  # no rights, no error
    assert api.post(101, "crm/Accounts", {"Name": "x", "Code": "R1"}).status_code == 403

    def rights(endpoint: str) -> bool:
        return api.get(101, "users/UserHasRights", {"endpoint": f"'{endpoint}'", "action": "'GET'"}).json()["d"][
            "UserHasRights"]

    assert rights("crm/Accounts") is False and rights("sync/CRM/Accounts") is False
    assert rights("financial/GLAccounts") is True


def test_a_division_not_granted_answers_403_with_its_reason(sandbox):
    import requests

    token = sandbox.access_token(divisions=[101])
    answer = requests.get(sandbox.api_url(102, "crm/Accounts") + "?$select=ID", timeout=10,
                          headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    assert answer.status_code == 403 and answer.headers["Reason"] == "NoDivisionAccess"


def test_deep_insert_of_invoice_lines(api):
    account = api.get(101, "crm/Accounts", {"$select": "ID", "$filter": "trim(Code) eq '1'"}).json()
    invoice = api.post(101, "salesinvoice/SalesInvoices", {
        "InvoiceTo": account["d"]["results"][0]["ID"], "Journal": "60",
        "SalesInvoiceLines": [{"Description": "one", "AmountFC": 10.0}, {"Description": "two", "AmountFC": 5.0}],
    })
    assert invoice.status_code == 201
    key = invoice.json()["d"]["InvoiceID"]
    lines = api.get(101, "salesinvoice/SalesInvoiceLines", {"$select": "Description,InvoiceID",
                                                           "$filter": f"InvoiceID eq guid'{key}'"})
    assert sorted(r["Description"] for r in lines.json()["d"]["results"]) == ["one", "two"]
