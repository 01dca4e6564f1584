"""target-exactonline: documents with PDF attachments (files and base64), changes, the attachments stream."""

from __future__ import annotations

import base64
import json

from tests.targetrun import DATA, api_calls, messages, record_put_bodies, run_target, singer_text, target_config, writes

SUBJECTS = ("Purchase invoice 2024-001", "Purchase invoice 2024-002", "Sales invoice 2024-100")


def _documents(sandbox, division):
    return {d["Subject"]: d for d in sandbox.records(division, "documents/Documents") if d["Subject"] in SUBJECTS}


def _attachments(sandbox, division, document_id):
    return sorted((a["FileName"], int(a["FileSize"])) for a in sandbox.records(division, "documents/DocumentAttachments")
                  if a["Document"] == document_id)


def _size(name: str) -> int:
    return (DATA / "files" / name).stat().st_size


def _inline_size(text: str, file_name: str) -> int:
    for line in text.splitlines():
        record = json.loads(line).get("record") or {}
        for spec in record.get("Attachments") or []:
            if isinstance(spec, dict) and spec.get("FileName") == file_name and spec.get("Attachment"):
                return len(base64.b64decode(spec["Attachment"]))
    raise AssertionError(file_name)


def test_documents_with_pdfs_from_files_and_base64(sandbox, tmp_path):
    division = sandbox.divisions[0]
    text = messages("documents.singer")
    result = run_target(target_config(sandbox, tmp_path), text)
    assert result.error is None, result.error
    assert result.summary["documents"] == {"created": 3, "updated": 0, "unchanged": 0, "rejected": 0,
                                           "attachments_created": 4, "attachments_skipped": 0}
    docs = _documents(sandbox, division)
    assert set(docs) == set(SUBJECTS)
    accounts = {a["Code"].strip(): a["ID"] for a in sandbox.records(division, "crm/Accounts")}
    first = docs["Purchase invoice 2024-001"]
    assert first["Type"] == 20 and first["Account"] == accounts["WB0001"]
    assert first["Body"] == "Scanned by the scanning tool"
    assert _attachments(sandbox, division, first["ID"]) == [("invoice-2024-001.pdf", _size("invoice-2024-001.pdf"))]
    second = docs["Purchase invoice 2024-002"]
    assert _attachments(sandbox, division, second["ID"]) == [
        ("invoice-2024-002.pdf", _inline_size(text, "invoice-2024-002.pdf"))]
    third = docs["Sales invoice 2024-100"]
    assert third["Type"] == 10 and third["Account"] == accounts["WB0002"]
    assert _attachments(sandbox, division, third["ID"]) == sorted([
        ("invoice-2024-100.pdf", _size("invoice-2024-100.pdf")),
        ("delivery-note-100.pdf", _size("delivery-note-100.pdf"))])
    # The uploaded bytes are the file's bytes.
    attachment = next(a for a in sandbox.records(division, "documents/DocumentAttachments")
                      if a["Document"] == first["ID"])
    downloaded = sandbox.admin("GET", f"/attachments/{division}/{attachment['ID']}")
    assert downloaded == (DATA / "files" / "invoice-2024-001.pdf").read_bytes()

    # Rerun: nothing to do; the ledger knows every document and file, so not a single request.
    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path), text)
    assert again.summary["documents"] == {"created": 0, "updated": 0, "unchanged": 3, "rejected": 0,
                                          "attachments_created": 0, "attachments_skipped": 4}
    assert sandbox.requests() == []

    # Compared with Exact (verify_unchanged): not a single write (documents and attachments are found by key).
    sandbox.reset_log()
    verified = run_target(target_config(sandbox, tmp_path, verify_unchanged=True), text)
    assert verified.summary["documents"] == again.summary["documents"]
    assert writes(sandbox) == []
    gets = [(c["path"]) for c in api_calls(sandbox)]
    assert gets == ["current/Me", "crm/Accounts", "documents/Documents", "documents/DocumentAttachments"], gets
    assert len(_documents(sandbox, division)) == 3


def test_changed_document_is_updated_field_wise_and_changed_file_added_once(sandbox, tmp_path, monkeypatch, caplog):

    division = sandbox.divisions[0]
    run_target(target_config(sandbox, tmp_path), messages("documents.singer"))
    before = _documents(sandbox, division)

    bodies = record_put_bodies(monkeypatch)
    sandbox.reset_log()
    changed = messages("documents_changed.singer")
    with caplog.at_level("WARNING", logger="target_exactonline.writer"):
        result = run_target(target_config(sandbox, tmp_path), changed)
    assert result.error is None, result.error
    assert result.summary["documents"] == {"created": 0, "updated": 2, "unchanged": 1, "rejected": 0,
                                           "attachments_created": 2, "attachments_skipped": 3}
    assert sorted(bodies, key=json.dumps) == sorted([
        {"Body": "Scanned by the scanning tool; approved by Finance"},
        {"DocumentDate": "2024-03-04T00:00:00"}], key=json.dumps)
    methods = sorted((w["method"], w["path"]) for w in writes(sandbox))
    assert methods == [("POST", "documents/DocumentAttachments")] * 2 + [("PUT", "documents/Documents")] * 2
    after = _documents(sandbox, division)
    assert {s: d["ID"] for s, d in after.items()} == {s: d["ID"] for s, d in before.items()}
    assert after["Purchase invoice 2024-001"]["Body"].endswith("approved by Finance")
    assert after["Purchase invoice 2024-001"]["AccountCode"].strip() == "WB0001"  # untouched
    # Exact cannot update an attachment: the corrected delivery note is added next to the old one, with a log line.
    assert _attachments(sandbox, division, after["Sales invoice 2024-100"]["ID"]) == sorted([
        ("invoice-2024-100.pdf", _size("invoice-2024-100.pdf")),
        ("delivery-note-100.pdf", _size("delivery-note-100.pdf")),
        ("delivery-note-100.pdf", _size("delivery-note-100-v2.pdf"))])
    assert any("Exact cannot update attachments" in r.getMessage() and "delivery-note-100.pdf" in r.getMessage()
               for r in caplog.records)
    assert [name for name, _ in _attachments(sandbox, division, after["Purchase invoice 2024-002"]["ID"])] == [
        "invoice-2024-002.pdf", "receipt-2024-002.pdf"]

    # And once more: all settled.
    sandbox.reset_log()
    settled = run_target(target_config(sandbox, tmp_path), changed)
    assert settled.summary["documents"]["unchanged"] == 3
    assert writes(sandbox) == []


def test_document_attachments_stream_skips_files_already_there(sandbox, tmp_path):
    division = sandbox.divisions[0]
    run_target(target_config(sandbox, tmp_path), messages("documents.singer"))
    sandbox.reset_log()
    result = run_target(target_config(sandbox, tmp_path), messages("document_attachments.singer"))
    assert result.error is None, result.error
    assert result.summary["document_attachments"] == {
        "created": 2, "updated": 0, "unchanged": 1, "rejected": 0, "attachments_created": 2, "attachments_skipped": 1}
    calls = [(c["method"], c["path"]) for c in api_calls(sandbox)]
    assert calls == [("GET", "current/Me"), ("GET", "documents/Documents"), ("GET", "documents/DocumentAttachments"),
                     ("POST", "documents/DocumentAttachments"), ("POST", "documents/DocumentAttachments")], calls
    docs = _documents(sandbox, division)
    assert [n for n, _ in _attachments(sandbox, division, docs["Purchase invoice 2024-001"]["ID"])] == [
        "credit-note-2024-003.pdf", "invoice-2024-001.pdf"]
    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path), messages("document_attachments.singer"))
    assert again.summary["document_attachments"]["unchanged"] == 3
    assert writes(sandbox) == []


def test_attachment_for_a_document_given_by_id(sandbox, tmp_path):
    division = sandbox.divisions[0]
    run_target(target_config(sandbox, tmp_path), messages("documents.singer"))
    document = _documents(sandbox, division)["Purchase invoice 2024-002"]
    lines = [
        {"type": "SCHEMA", "stream": "document_attachments", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "document_attachments",
         "record": {"Document": document["ID"].upper(), "Path": "credit-note-2024-003.pdf"}},
    ]
    result = run_target(target_config(sandbox, tmp_path), singer_text(lines))
    assert result.summary["document_attachments"]["created"] == 1
    assert ("credit-note-2024-003.pdf", _size("credit-note-2024-003.pdf")) in _attachments(
        sandbox, division, document["ID"])
