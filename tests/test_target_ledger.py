"""target-exactonline: the write ledger makes an unchanged rerun cost no API call at all.

Calls are always counted in the sandbox's own request log, never by the target's counters.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from target_exactonline import ledger as ledger_module
from target_exactonline.target import TargetExactOnline
from tests.targetrun import (
    DATA,
    api_calls,
    ledger_entries,
    ledger_file,
    messages,
    record_put_bodies,
    run_target,
    singer_text,
    target_config,
    token_strings,
    writes,
)

CODES = {"WB0001", "WB0002", "WB0003", "WB 0004"}
EMAILS = {"jan.jansen@writeback.example", "piet@obrien.example", "o'neil@obrien.example", "anna@cafe.example"}
SUBJECTS = ("Purchase invoice 2024-001", "Purchase invoice 2024-002", "Sales invoice 2024-100")
EXE = str(Path(sys.executable).parent / "target-exactonline")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(TargetExactOnline, "write_retry_delay", 0.05)


def _accounts(sandbox) -> list[dict]:
    return [a for a in sandbox.records(sandbox.divisions[0], "crm/Accounts") if (a["Code"] or "").strip() in CODES]


def _contacts(sandbox) -> list[dict]:
    return [c for c in sandbox.records(sandbox.divisions[0], "crm/Contacts") if (c["Email"] or "") in EMAILS]


def _rows(config: dict, stream: str) -> dict:
    """Ledger rows of one stream by their (single-field) natural key value."""
    return {e["key"][0][1]: e for e in ledger_entries(config) if e["stream"] == stream}


def _trail(sandbox) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in api_calls(sandbox)]


def _documents(sandbox) -> dict[str, dict]:
    return {d["Subject"]: d for d in sandbox.records(sandbox.divisions[0], "documents/Documents")
            if d["Subject"] in SUBJECTS}


def _attachments(sandbox, document_id) -> list[dict]:
    return [a for a in sandbox.records(sandbox.divisions[0], "documents/DocumentAttachments")
            if a["Document"] == document_id]



def test_unchanged_rerun_makes_not_a_single_request(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    text = messages("accounts_contacts.singer")
    first = run_target(config, text)
    assert first.error is None, first.error
    assert first.summary["accounts"]["created"] == 4 and first.summary["contacts"]["created"] == 4

    # The default ledger sits next to the token store, holds a row per record with Exact's ID.
    assert ledger_file(config) == tmp_path / "tokens.target-ledger.sqlite"
    assert ledger_file(config).is_file()
    accounts = _rows(config, "accounts")
    ids = {a["Code"].strip().casefold(): a["ID"] for a in _accounts(sandbox)}
    assert {code: row["exact_id"] for code, row in accounts.items()} == ids
    contacts = _rows(config, "contacts")
    by_email = {c["Email"]: c for c in _contacts(sandbox)}
    assert {email: row["exact_id"] for email, row in contacts.items()} == {e: c["ID"] for e, c in by_email.items()}
    assert contacts["jan.jansen@writeback.example"]["extra"]["account"] == ids["wb0001"]

    again = target_config(sandbox, tmp_path)
    sandbox.reset_log()
    second = run_target(again, text)
    assert second.error is None, second.error
    assert second.summary["accounts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 0}
    assert second.summary["contacts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 0}
    # Not one request: no division check (current/Me), no lookup, no token refresh.
    assert sandbox.requests() == []
    assert len(_accounts(sandbox)) == 4 and len(_contacts(sandbox)) == 4
    assert second.states == first.states

    # The ledger holds hashes, keys and IDs: no secrets, no field values.
    data = ledger_file(config).read_bytes()
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    secrets = [config["client_secret"], config["refresh_token"], again["refresh_token"]]
    secrets += token_strings(tokens)
    assert len(secrets) >= 4
    for text_value in [*secrets, "Writeback Example BV", "Utrecht", "+31 30 1234567", "Jansen"]:
        assert text_value.encode() not in data, text_value
    assert stat.S_IMODE(ledger_file(config).stat().st_mode) == 0o600


def test_a_changed_field_is_put_alone_and_the_ledger_follows(sandbox, tmp_path, monkeypatch):
    text = messages("accounts_contacts.singer")
    run_target(target_config(sandbox, tmp_path), text)
    config = target_config(sandbox, tmp_path)
    before = ledger_entries(config)
    changed = text.replace('"city": "Utrecht"', '"city": "Amersfoort"')
    assert changed != text

    bodies = record_put_bodies(monkeypatch)
    sandbox.reset_log()
    result = run_target(config, changed)
    assert result.error is None, result.error
    assert result.summary["accounts"] == {"created": 0, "updated": 1, "unchanged": 3, "rejected": 0}
    assert result.summary["contacts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 0}
    assert bodies == [{"City": "Amersfoort"}]
    assert _trail(sandbox) == [("GET", "current/Me"), ("GET", "crm/Accounts"), ("PUT", "crm/Accounts")]
    lookup = api_calls(sandbox)[1]["query"]["$filter"]
    assert "WB0001" in lookup and "WB0002" not in lookup  # only the changed record is looked up
    after_rows = {(e["stream"], e["key"][0][1]): e for e in ledger_entries(config)}
    before_rows = {(e["stream"], e["key"][0][1]): e for e in before}
    assert after_rows.keys() == before_rows.keys()
    moved = {k for k in after_rows if after_rows[k]["fingerprint"] != before_rows[k]["fingerprint"]}
    assert moved == {("accounts", "wb0001")}
    assert after_rows[("accounts", "wb0001")]["exact_id"] == before_rows[("accounts", "wb0001")]["exact_id"]
    assert [a["City"] for a in _accounts(sandbox) if a["Code"].strip() == "WB0001"] == ["Amersfoort"]

    sandbox.reset_log()
    settled = run_target(target_config(sandbox, tmp_path), changed)
    assert settled.summary["accounts"]["unchanged"] == 4
    assert sandbox.requests() == []


def test_an_edit_made_in_exact_is_left_alone_with_the_ledger_and_corrected_without(sandbox, tmp_path, monkeypatch):
    division = sandbox.divisions[0]
    text = messages("accounts_contacts.singer")
    run_target(target_config(sandbox, tmp_path), text)
    account = next(a for a in _accounts(sandbox) if a["Code"].strip() == "WB0001")
    sandbox.update(division, "crm/Accounts", account["ID"], City="Edited By Hand")
    anna = next(c for c in _contacts(sandbox) if c["Email"] == "anna@cafe.example")
    sandbox.delete(division, "crm/Contacts", anna["ID"])

    # The source did not change: the ledger vouches for it, Exact is not asked (the trade-off).
    config = target_config(sandbox, tmp_path)
    sandbox.reset_log()
    trusted = run_target(config, text)
    assert trusted.summary["accounts"]["unchanged"] == 4 and trusted.summary["contacts"]["unchanged"] == 4
    assert sandbox.requests() == []
    assert next(a for a in _accounts(sandbox) if a["Code"].strip() == "WB0001")["City"] == "Edited By Hand"
    assert "anna@cafe.example" not in {c["Email"] for c in _contacts(sandbox)}

    # verify_unchanged: every record is compared with Exact; the edit is overwritten, the deleted one made again.
    bodies = record_put_bodies(monkeypatch)
    sandbox.reset_log()
    verified = run_target(target_config(sandbox, tmp_path, verify_unchanged=True), text)
    assert verified.error is None, verified.error
    assert verified.summary["accounts"] == {"created": 0, "updated": 1, "unchanged": 3, "rejected": 0}
    assert verified.summary["contacts"] == {"created": 1, "updated": 0, "unchanged": 3, "rejected": 0}
    assert bodies == [{"City": "Utrecht"}]
    assert sorted(_trail(sandbox)) == sorted([
        ("GET", "current/Me"), ("GET", "crm/Accounts"), ("PUT", "crm/Accounts"), ("GET", "crm/Contacts"),
        ("POST", "crm/Contacts")])
    assert next(a for a in _accounts(sandbox) if a["Code"].strip() == "WB0001")["City"] == "Utrecht"
    new_anna = next(c for c in _contacts(sandbox) if c["Email"] == "anna@cafe.example")
    assert _rows(config, "contacts")["anna@cafe.example"]["exact_id"] == new_anna["ID"] != anna["ID"]

    sandbox.reset_log()
    assert run_target(target_config(sandbox, tmp_path), text).summary["contacts"]["unchanged"] == 4
    assert sandbox.requests() == []


def test_a_recreated_account_makes_the_contacts_naming_it_be_compared_again(sandbox, tmp_path, caplog):
    division = sandbox.divisions[0]
    text = messages("accounts_contacts.singer")
    run_target(target_config(sandbox, tmp_path), text)
    old = next(a for a in _accounts(sandbox) if a["Code"].strip() == "WB0001")
    sandbox.delete(division, "crm/Accounts", old["ID"])

    # WB0001 changed in the source, so it is looked up, not found, and created again with a new ID. Jan's
    # contact did not change, but the account its AccountCode names did: the ledger must not vouch for it.
    changed = text.replace('"city": "Utrecht"', '"city": "Amersfoort"')
    sandbox.reset_log()
    with caplog.at_level("WARNING", logger="target_exactonline.writer"):
        result = run_target(target_config(sandbox, tmp_path), changed)
    assert result.error is None, result.error
    assert result.summary["accounts"] == {"created": 1, "updated": 0, "unchanged": 3, "rejected": 0}
    new = next(a for a in _accounts(sandbox) if a["Code"].strip() == "WB0001")
    assert new["ID"] != old["ID"]
    contact_lookups = [c["query"]["$filter"] for c in api_calls(sandbox) if c["path"] == "crm/Contacts"]
    assert len(contact_lookups) == 1
    assert "jan.jansen@writeback.example" in contact_lookups[0] and "piet@" not in contact_lookups[0]
    # Exact does not let the API move a contact to another account: compared, reported, left as it is.
    assert any("jan.jansen@writeback.example" in r.getMessage() and "Account differ" in r.getMessage()
               for r in caplog.records)


def test_a_kill_between_the_posts_and_the_ledger_save_gives_no_duplicate(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([EXE, "--config", str(tmp_path / "config.json"),
                           "--input", str(DATA / "accounts_contacts.singer")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "EXACT_TEST_CRASH_AT": ledger_module.CRASH_BEFORE_SAVE})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert proc.stdout == ""  # no state acknowledged
    # The accounts are in Exact, the ledger never heard of them.
    assert len(_accounts(sandbox)) == 4
    assert ledger_entries(config) == []

    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path), messages("accounts_contacts.singer"))
    assert again.error is None, again.error
    assert again.summary["accounts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 0}
    assert again.summary["contacts"] == {"created": 4, "updated": 0, "unchanged": 0, "rejected": 0}
    assert ("POST", "crm/Accounts") not in _trail(sandbox)
    assert len(_accounts(sandbox)) == 4 and len(_contacts(sandbox)) == 4
    assert len(_rows(config, "accounts")) == 4 and len(_rows(config, "contacts")) == 4

    sandbox.reset_log()
    run_target(target_config(sandbox, tmp_path), messages("accounts_contacts.singer"))
    assert sandbox.requests() == []


def test_a_post_whose_answer_was_dropped_is_recorded_with_the_id_found_afterwards(sandbox, tmp_path):
    text = singer_text([
        {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "LOST01", "Name": "Lost Answer BV"}},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "LOST02", "Name": "Second BV"}},
    ])
    config = target_config(sandbox, tmp_path)
    sandbox.faults({"kind": "drop_after", "path": "crm/Accounts", "method": "POST", "count": 1})
    result = run_target(config, text)
    assert result.error is None, result.error
    assert result.summary["accounts"]["created"] == 2
    rows = [a for a in sandbox.records(sandbox.divisions[0], "crm/Accounts") if a["Code"].strip() == "LOST01"]
    assert len(rows) == 1
    assert _rows(config, "accounts")["lost01"]["exact_id"] == rows[0]["ID"]

    sandbox.faults()
    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path), text)
    assert again.summary["accounts"]["unchanged"] == 2
    assert sandbox.requests() == []


def test_documents_with_attachments_rerun_free_and_a_same_size_change_is_a_new_attachment(sandbox, tmp_path, caplog):
    division = sandbox.divisions[0]
    text = messages("documents.singer")
    config = target_config(sandbox, tmp_path)
    first = run_target(config, text)
    assert first.error is None, first.error
    assert first.summary["documents"]["attachments_created"] == 4
    pdf = tmp_path / "attachments" / "invoice-2024-001.pdf"
    original = pdf.read_bytes()
    row = _rows(config, "documents")["purchase invoice 2024-001"]
    assert row["extra"]["files"] == {"invoice-2024-001.pdf": [[len(original), hashlib.sha256(original).hexdigest()]]}

    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path), text)
    assert again.summary["documents"] == {"created": 0, "updated": 0, "unchanged": 3, "rejected": 0,
                                          "attachments_created": 0, "attachments_skipped": 4}
    assert sandbox.requests() == []

    # Same name, same size, other bytes: name and size alone would call it "already there".
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0xFF
    pdf.write_bytes(bytes(changed))
    sandbox.reset_log()
    with caplog.at_level("WARNING", logger="target_exactonline.writer"):
        result = run_target(target_config(sandbox, tmp_path), text)
    assert result.error is None, result.error
    assert result.summary["documents"] == {"created": 0, "updated": 0, "unchanged": 3, "rejected": 0,
                                           "attachments_created": 1, "attachments_skipped": 3}
    assert [(w["method"], w["path"]) for w in writes(sandbox)] == [("POST", "documents/DocumentAttachments")]
    warning = [r.getMessage() for r in caplog.records if "invoice-2024-001.pdf" in r.getMessage()]
    assert len(warning) == 1 and "same name and size" in warning[0] and "Exact cannot update attachments" in warning[0]
    document = _documents(sandbox)["Purchase invoice 2024-001"]
    files = _attachments(sandbox, document["ID"])
    assert sorted((a["FileName"], int(a["FileSize"])) for a in files) == [("invoice-2024-001.pdf", len(original))] * 2
    contents = {sandbox.admin("GET", f"/attachments/{division}/{a['ID']}") for a in files}
    assert contents == {original, bytes(changed)}
    versions = _rows(config, "documents")["purchase invoice 2024-001"]["extra"]["files"]["invoice-2024-001.pdf"]
    assert [v[1] for v in versions] == [hashlib.sha256(original).hexdigest(), hashlib.sha256(changed).hexdigest()]

    sandbox.reset_log()
    settled = run_target(target_config(sandbox, tmp_path), text)
    assert settled.summary["documents"]["unchanged"] == 3
    assert sandbox.requests() == []


def test_attachments_stream_reruns_free_and_detects_changed_inline_content(sandbox, tmp_path, caplog):
    run_target(target_config(sandbox, tmp_path), messages("documents.singer"))
    text = messages("document_attachments.singer")
    first = run_target(target_config(sandbox, tmp_path), text)
    assert first.summary["document_attachments"]["created"] == 2
    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path), text)
    assert again.summary["document_attachments"]["unchanged"] == 3
    assert sandbox.requests() == []

    lines = [json.loads(line) for line in text.splitlines()]
    receipt = next(m for m in lines if m.get("record", {}).get("FileName") == "receipt-2024-002.pdf")
    data = bytearray(base64.b64decode(receipt["record"]["Attachment"]))
    data[-10] ^= 0x01
    receipt["record"]["Attachment"] = base64.b64encode(bytes(data)).decode()
    sandbox.reset_log()
    with caplog.at_level("WARNING", logger="target_exactonline.writer"):
        result = run_target(target_config(sandbox, tmp_path), singer_text(lines))
    assert result.summary["document_attachments"] == {
        "created": 1, "updated": 0, "unchanged": 2, "rejected": 0, "attachments_created": 1, "attachments_skipped": 2}
    assert [(w["method"], w["path"]) for w in writes(sandbox)] == [("POST", "documents/DocumentAttachments")]
    assert any("receipt-2024-002.pdf" in r.getMessage() and "same name and size" in r.getMessage()
               for r in caplog.records)


def test_dry_run_leaves_no_ledger_and_does_not_change_one(sandbox, tmp_path, monkeypatch):
    text = messages("accounts_contacts.singer")
    place = tmp_path / "state" / "writeback.sqlite"
    dry = run_target(target_config(sandbox, tmp_path, dry_run=True, ledger_path=str(place)), text)
    assert dry.error is None, dry.error
    assert dry.summary["accounts"]["created"] == 4
    assert not (tmp_path / "state").exists()  # neither the file, its lock, nor the folder
    assert not ledger_file(target_config(sandbox, tmp_path)).exists()

    config = target_config(sandbox, tmp_path, ledger_path=str(place))
    run_target(config, text)
    assert place.is_file() and len(ledger_entries(config)) == 8
    before, saved = ledger_entries(config), place.read_bytes()

    changed = text.replace('"city": "Utrecht"', '"city": "Amersfoort"')
    would = run_target(target_config(sandbox, tmp_path, dry_run=True, ledger_path=str(place)), changed)
    assert would.summary["accounts"]["updated"] == 1
    assert ledger_entries(config) == before and place.read_bytes() == saved

    # The dry run recorded nothing, so the real run still writes the change.
    bodies = record_put_bodies(monkeypatch)
    real = run_target(target_config(sandbox, tmp_path, ledger_path=str(place)), changed)
    assert real.summary["accounts"]["updated"] == 1 and bodies == [{"City": "Amersfoort"}]


def test_a_second_run_on_a_ledger_in_use_stops_before_calling_exact(sandbox, tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_module, "LOCK_TIMEOUT", 0.3)
    config = target_config(sandbox, tmp_path)
    lock = Path(str(ledger_file(config)) + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another run holds it
        sandbox.reset_log()
        blocked = run_target(config, messages("accounts_contacts.singer"))
        assert blocked.error is not None and "another target-exactonline run uses it" in str(blocked.error)
        assert api_calls(sandbox) == [] and blocked.states == []
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    done = run_target(target_config(sandbox, tmp_path), messages("accounts_contacts.singer"))
    assert done.error is None, done.error
    assert done.summary["accounts"]["created"] == 4


def test_only_what_exact_confirmed_is_in_the_ledger(sandbox, tmp_path):
    text = singer_text([
        {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "DOWN01", "Name": "Written BV"}},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "DOWN02", "Name": "Never Written BV"}},
        {"type": "SCHEMA", "stream": "documents", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "documents", "record": {"Subject": "Refused by Exact", "Type": 999}},
        {"type": "STATE", "value": {"bookmarks": {"accounts": "done"}}},
    ])
    config = target_config(sandbox, tmp_path)
    # The first POST works, then Exact fails every POST: the run stops part-way.
    sandbox.faults({"kind": "error", "status": 503, "path": "crm/Accounts", "method": "POST", "after": 1})
    failed = run_target(config, text)
    assert failed.error is not None and "did not answer 3 POSTs" in str(failed.error)
    # What Exact confirmed before the failure is kept; the record it never got is not.
    assert set(_rows(config, "accounts")) == {"down01"}

    sandbox.faults()
    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path), text)
    assert again.summary["accounts"] == {"created": 1, "updated": 0, "unchanged": 1, "rejected": 0}
    assert again.summary["documents"]["rejected"] == 1
    account_calls = [c for c in api_calls(sandbox) if c["path"] == "crm/Accounts"]
    assert [c["method"] for c in account_calls] == ["GET", "POST"]
    assert "DOWN02" in account_calls[0]["query"]["$filter"] and "DOWN01" not in account_calls[0]["query"]["$filter"]
    assert set(_rows(config, "accounts")) == {"down01", "down02"}
    # A record Exact refused is no confirmed row; its refusal is remembered instead, so the next run
    # rejects it again with Exact's message and sends nothing.
    assert _rows(config, "documents") == {}
    sandbox.reset_log()
    third = run_target(target_config(sandbox, tmp_path), text)
    assert third.summary["documents"]["rejected"] == 1 and third.summary["accounts"]["unchanged"] == 2
    assert writes(sandbox) == []
    assert third.rejects[0]["reason"].startswith("not sent again: unchanged since Exact refused it on ")
    assert "Document type 999 does not exist." in third.rejects[0]["reason"]
