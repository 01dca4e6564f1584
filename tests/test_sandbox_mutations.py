"""Point 2: admin inserts, updates and deletes between runs: rowversions, Modified, sync/Deleted, division moves."""

from __future__ import annotations

import pytest

TL = "financialtransaction/TransactionLines"
SYNC_TL = "sync/Financial/TransactionLines"


def _sync(api, path, since, select="Timestamp,ID,Description"):
    pages = api.pages(101, path, {"$select": select, "$filter": f"Timestamp gt {since}L"})
    return [row for page in pages for row in page["results"]]


def test_insert_update_delete_drive_incremental_sync_and_deletes(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    baseline = _sync(api, SYNC_TL, 1)
    bookmark = max(int(r["Timestamp"]) for r in baseline)
    assert _sync(api, SYNC_TL, bookmark) == []

    inserted = sandbox.insert(101, TL, {"Description": "new line", "AmountDC": 12.5})[0]
    assert inserted["Timestamp"] > bookmark and inserted["Division"] == 101
    changed_id = baseline[5]["ID"]
    updated = sandbox.update(101, TL, changed_id, Description="changed")
    assert updated["Timestamp"] > inserted["Timestamp"] and updated["Modified"] != baseline[5].get("Modified")

    increment = _sync(api, SYNC_TL, bookmark)
    assert [(r["ID"], r["Description"]) for r in increment] == [(inserted["ID"], "new line"),
                                                                (changed_id, "changed")]
    standard = api.get(101, f"{TL}(guid'{changed_id}')", {"$select": "Description"}).json()["d"]
    bulk = api.get(101, "bulk/Financial/TransactionLines", {"$select": "ID,Description",
                                                          "$filter": f"ID eq guid'{changed_id}'"}).json()
    assert standard["Description"] == "changed" == bulk["d"]["results"][0]["Description"]

    bookmark = int(increment[-1]["Timestamp"])
    deleted = sandbox.delete(101, TL, changed_id)
    assert [(d["EntityKey"], d["EntityType"]) for d in deleted] == [(changed_id, 1)]
    gone = api.get(101, f"{TL}(guid'{changed_id}')")
    assert gone.status_code == 404
    assert _sync(api, SYNC_TL, bookmark) == []  # sync endpoints never show deletes
    log = _sync(api, "sync/Deleted", bookmark, "Timestamp,EntityKey,EntityType,DeletedDate,Division,ID")
    assert [(r["EntityKey"], r["EntityType"], r["Division"]) for r in log] == [(changed_id, 1, 101)]
    assert int(log[0]["Timestamp"]) > bookmark and log[0]["DeletedDate"].startswith("/Date(")


@pytest.mark.parametrize("path,entity_type", [
    ("crm/Accounts", 2), ("crm/Contacts", 5), ("financial/GLAccounts", 7), ("logistics/Items", 9),
    ("salesinvoice/SalesInvoices", 13), ("documents/DocumentAttachments", 4),
])
def test_deleted_rows_carry_the_entity_type(sandbox, path, entity_type):
    record = sandbox.records(101, path)[0]
    key = record.get("ID") or record.get("InvoiceID")
    written = sandbox.delete(101, path, key)
    assert (key, entity_type) in [(d["EntityKey"], d["EntityType"]) for d in written]


def test_generated_delete_history_and_two_month_retention(sandbox, sandbox_client):
    sandbox.set(access_token_lifetime=10**7)
    api = sandbox_client(sandbox)
    history = _sync(api, "sync/Deleted", 1, "Timestamp,EntityKey,EntityType,DeletedDate")
    assert len(history) == 5 and {r["EntityType"] for r in history} <= {1, 2, 4, 5, 6, 7, 9, 13}
    # Deleted 1..5 days before today; 57 days on, those older than 61 days (two months) are gone.
    sandbox.advance(57 * 86400)
    assert len(_sync(api, "sync/Deleted", 1, "EntityKey")) == 3
    sandbox.advance(10 * 86400)
    assert _sync(api, "sync/Deleted", 1, "EntityKey") == []


def test_deleting_a_document_deletes_its_attachments(sandbox):
    attachments = sandbox.records(101, "documents/DocumentAttachments")
    document = attachments[0]["Document"]
    own = {a["ID"] for a in attachments if a["Document"] == document}
    written = sandbox.delete(101, "documents/Documents", document)
    assert {(d["EntityKey"], d["EntityType"]) for d in written} == {(document, 6)} | {(a, 4) for a in own}
    assert own.isdisjoint(a["ID"] for a in sandbox.records(101, "documents/DocumentAttachments"))


def test_every_change_takes_the_next_rowversion_of_the_division(sandbox):
    first = sandbox.insert(101, "crm/Accounts", {"Name": "A"})[0]
    second = sandbox.insert(101, "documents/Documents", {"Subject": "B", "Type": 20})[0]
    third = sandbox.update(101, "crm/Accounts", first["ID"], Name="A2")
    other = sandbox.insert(102, "crm/Accounts", {"Name": "C"})[0]
    assert [first["Timestamp"] + 1, first["Timestamp"] + 2] == [second["Timestamp"], third["Timestamp"]]
    assert other["Timestamp"] == first["Timestamp"]  # each division has its own sequence
    assert third["Code"] is None and third["Name"] == "A2"


def test_admin_rejects_unknown_fields(sandbox):
    with pytest.raises(RuntimeError, match="Nope"):
        sandbox.insert(101, "crm/Accounts", {"Nope": 1})


def test_division_move_resets_rowversions_and_sets_the_move_date(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    before = max(int(r["Timestamp"]) for r in _sync(api, SYNC_TL, 1))
    sandbox.admin("POST", "/divisions/101/move", {})
    after = _sync(api, SYNC_TL, 1)
    assert len(after) == 300 and max(int(r["Timestamp"]) for r in after) < before
    assert _sync(api, SYNC_TL, before) == []  # an old bookmark now misses everything: resync on a move
    rows = api.get(101, "system/Divisions", {"$select": "Code,DivisionMoveDate"}).json()["d"]["results"]
    moved = {r["Code"]: r["DivisionMoveDate"] for r in rows}
    assert moved[101] and moved[101].startswith("/Date(") and moved[102] is None
    sandbox.admin("PATCH", "/divisions/102", {"DivisionMoveDate": "2024-02-01T00:00:00"})
    rows = api.get(101, "system/Divisions", {"$select": "Code,DivisionMoveDate"}).json()["d"]["results"]
    assert {r["Code"]: r["DivisionMoveDate"] for r in rows}[102] == "/Date(1706745600000)/"
