"""target-exactonline: a CSV-like batch of accounts and contacts, loaded twice, lands once."""

from __future__ import annotations

import json

from tests.targetrun import api_calls, messages, record_put_bodies, run_target, singer_text, target_config, writes


def _ours(rows: list[dict], field: str, values: set[str]) -> list[dict]:
    return [r for r in rows if (r.get(field) or "").strip() in values]


def test_csv_batch_loaded_twice_creates_once_and_second_load_writes_nothing(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    division = sandbox.divisions[0]
    text = messages("accounts_contacts.singer")
    codes = {"WB0001", "WB0002", "WB0003", "WB 0004"}
    emails = {"jan.jansen@writeback.example", "piet@obrien.example", "o'neil@obrien.example", "anna@cafe.example"}

    first = run_target(config, text)
    assert first.error is None, first.error
    assert first.summary["accounts"] == {"created": 4, "updated": 0, "unchanged": 0, "rejected": 0}
    assert first.summary["contacts"] == {"created": 4, "updated": 0, "unchanged": 0, "rejected": 0}
    calls = api_calls(sandbox)
    # One lookup per stream for the whole batch, then one POST per new record.
    lookups = [c for c in calls if c["method"] == "GET" and c["path"] in ("crm/Accounts", "crm/Contacts")]
    assert len(lookups) == 2, lookups
    assert len([c for c in calls if c["method"] == "POST"]) == 8

    accounts = _ours(sandbox.records(division, "crm/Accounts"), "Code", codes)
    assert len(accounts) == 4
    by_code = {a["Code"].strip(): a for a in accounts}
    assert by_code["WB0002"]["Name"] == "O'Brien & Zonen BV"
    assert by_code["WB0003"]["City"] == "Köln"
    assert by_code["WB0001"]["IsSupplier"] is True
    contacts = _ours(sandbox.records(division, "crm/Contacts"), "Email", emails)
    assert len(contacts) == 4
    by_email = {c["Email"]: c for c in contacts}
    assert by_email["o'neil@obrien.example"]["Account"] == by_code["WB0002"]["ID"]
    assert by_email["jan.jansen@writeback.example"]["Account"] == by_code["WB0001"]["ID"]
    assert first.states == [json.loads(text.splitlines()[-1])["value"]]

    # Rerun: the write ledger knows every record unchanged, so not a single request reaches Exact.
    config = target_config(sandbox, tmp_path)
    sandbox.reset_log()
    second = run_target(config, text)
    assert second.error is None, second.error
    assert second.summary["accounts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 0}
    assert second.summary["contacts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 0}
    assert sandbox.requests() == []
    assert second.states == first.states

    # Rerun comparing with Exact anyway (verify_unchanged): lookups, still no write.
    sandbox.reset_log()
    verified = run_target(target_config(sandbox, tmp_path, verify_unchanged=True), text)
    assert verified.error is None, verified.error
    assert verified.summary == second.summary
    assert writes(sandbox) == []
    calls = api_calls(sandbox)
    # current/Me (division check) + one lookup per stream; AccountCode resolves from the accounts lookup.
    assert [(c["method"], c["path"]) for c in calls] == [
        ("GET", "current/Me"), ("GET", "crm/Accounts"), ("GET", "crm/Contacts")], calls
    assert len(_ours(sandbox.records(division, "crm/Accounts"), "Code", codes)) == 4
    assert len(_ours(sandbox.records(division, "crm/Contacts"), "Email", emails)) == 4
    assert verified.states == first.states


def test_lookup_filter_escapes_quotes_and_uses_trim_for_account_codes(sandbox, tmp_path):
    run_target(target_config(sandbox, tmp_path), messages("accounts_contacts.singer"))
    account_lookup = next(c for c in api_calls(sandbox) if c["method"] == "GET" and c["path"] == "crm/Accounts")
    contact_lookup = next(c for c in api_calls(sandbox) if c["method"] == "GET" and c["path"] == "crm/Contacts")
    assert "trim(Code) eq 'WB0001' or trim(Code) eq 'WB0002'" in account_lookup["query"]["$filter"]
    assert "Email eq 'o''neil@obrien.example'" in contact_lookup["query"]["$filter"]
    assert set(account_lookup["query"]["$select"].split(",")) >= {"ID", "Code", "Name", "City"}


def test_changed_fields_are_updated_field_wise_and_others_left_alone(sandbox, tmp_path, monkeypatch):

    config = target_config(sandbox, tmp_path)
    division = sandbox.divisions[0]
    text = messages("accounts_contacts.singer")
    run_target(config, text)
    # Somebody edits a field in Exact that the CSV does not carry: the target must not touch it.
    account = next(a for a in sandbox.records(division, "crm/Accounts") if a["Code"].strip() == "WB0001")
    sandbox.update(division, "crm/Accounts", account["ID"], Phone="+31 30 0000000")

    changed = text.replace('"city": "Utrecht"', '"city": "Amersfoort"')
    bodies = record_put_bodies(monkeypatch)
    sandbox.reset_log()
    result = run_target(target_config(sandbox, tmp_path), changed)
    assert result.summary["accounts"] == {"created": 0, "updated": 1, "unchanged": 3, "rejected": 0}
    assert [(w["method"], w["path"]) for w in writes(sandbox)] == [("PUT", "crm/Accounts")]
    assert bodies == [{"City": "Amersfoort"}]
    after = next(a for a in sandbox.records(division, "crm/Accounts") if a["Code"].strip() == "WB0001")
    assert after["City"] == "Amersfoort" and after["Phone"] == "+31 30 0000000"
    assert after["Name"] == "Writeback Example BV"


def test_duplicate_keys_in_one_batch_are_merged_so_reruns_stay_quiet(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    lines = [
        {"type": "SCHEMA", "stream": "contacts", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "contacts", "record": {"Email": "twice@dup.example", "LastName": "Old"}},
        {"type": "RECORD", "stream": "contacts", "record": {"Email": "TWICE@dup.example", "LastName": "New"}},
    ]
    text = singer_text(lines)
    first = run_target(config, text)
    assert first.summary["contacts"]["created"] == 1
    assert first.summary["contacts"]["merged_duplicates"] == 1
    rows = [r for r in sandbox.records(sandbox.divisions[0], "crm/Contacts")
            if (r["Email"] or "").lower() == "twice@dup.example"]
    assert len(rows) == 1 and rows[0]["LastName"] == "New"
    sandbox.reset_log()
    # Compared with Exact (not just the ledger): the merged record is what Exact holds.
    second = run_target(target_config(sandbox, tmp_path, verify_unchanged=True), text)
    assert second.summary["contacts"]["unchanged"] == 1
    assert writes(sandbox) == []


def test_dry_run_reports_and_writes_nothing(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path, dry_run=True)
    result = run_target(config, messages("accounts_contacts.singer"))
    assert result.error is None
    assert result.summary["accounts"]["created"] == 4
    assert result.summary["contacts"]["created"] == 4  # their accounts resolve to the would-be accounts
    assert writes(sandbox) == []
    assert not [a for a in sandbox.records(sandbox.divisions[0], "crm/Accounts") if a["Code"].strip() == "WB0001"]


def test_records_go_to_the_division_they_name(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    other = sandbox.divisions[1]
    lines = [
        {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "DIV001", "Name": "Default BV"}},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "DIV001", "Name": "Other BV", "Division": other}},
    ]
    result = run_target(config, singer_text(lines))
    assert result.summary["accounts"]["created"] == 2
    mine = [a for a in sandbox.records(sandbox.divisions[0], "crm/Accounts") if a["Code"].strip() == "DIV001"]
    theirs = [a for a in sandbox.records(other, "crm/Accounts") if a["Code"].strip() == "DIV001"]
    assert [a["Name"] for a in mine] == ["Default BV"] and [a["Name"] for a in theirs] == ["Other BV"]


def test_empty_cells_clear_text_but_do_not_fight_exacts_defaults(sandbox, tmp_path):
    division = sandbox.divisions[0]
    lines = [
        {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "accounts", "record": {
            "code": "EMPTY1", "name": "Empty Cells BV", "city": "Utrecht", "is_supplier": "",
            "credit_line_sales": ""}},
    ]
    text = singer_text(lines)
    run_target(target_config(sandbox, tmp_path), text)
    account = next(a for a in sandbox.records(division, "crm/Accounts") if a["Code"].strip() == "EMPTY1")
    # What Exact itself would have filled in.
    sandbox.update(division, "crm/Accounts", account["ID"], IsSupplier=False, CreditLineSales=0.0)
    # verify_unchanged: compared with Exact's values, not vouched for by the ledger.
    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path, verify_unchanged=True), text)
    assert again.summary["accounts"]["unchanged"] == 1
    assert writes(sandbox) == [] and api_calls(sandbox)

    cleared = text.replace('"city": "Utrecht"', '"city": ""')
    sandbox.reset_log()
    result = run_target(target_config(sandbox, tmp_path), cleared)
    assert result.summary["accounts"]["updated"] == 1
    account = next(a for a in sandbox.records(division, "crm/Accounts") if a["Code"].strip() == "EMPTY1")
    assert account["City"] in (None, "")
    sandbox.reset_log()
    assert run_target(target_config(sandbox, tmp_path, verify_unchanged=True),
                      cleared).summary["accounts"]["unchanged"] == 1
    assert writes(sandbox) == [] and api_calls(sandbox)


def test_items_and_a_stream_with_a_configured_natural_key(sandbox, tmp_path):
    lines = [
        {"type": "SCHEMA", "stream": "items", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "items", "record": {"code": "WB-ART-1", "description": "Writeback artikel",
                                                          "is_sales_item": "true", "unit": "pc"}},
        {"type": "SCHEMA", "stream": "cost_centers", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "cost_centers", "record": {"code": "WB-CC", "description": "Writeback kosten"}},
    ]
    text = singer_text(lines)
    config = target_config(sandbox, tmp_path, natural_keys={"cost_centers": ["Code"]})
    first = run_target(config, text)
    assert first.error is None, first.error
    assert first.summary == {"items": {"created": 1, "updated": 0, "unchanged": 0, "rejected": 0},
                             "cost_centers": {"created": 1, "updated": 0, "unchanged": 0, "rejected": 0}}
    sandbox.reset_log()
    second = run_target(target_config(sandbox, tmp_path, natural_keys={"cost_centers": ["Code"]}), text)
    assert second.summary["items"]["unchanged"] == 1 and second.summary["cost_centers"]["unchanged"] == 1
    assert writes(sandbox) == []
