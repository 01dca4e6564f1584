"""target-exactonline: bad input goes to the reject file with its reason, the rest lands."""

from __future__ import annotations

import json
import os

from target_exactonline.target import RecordsRejected
from tests.targetrun import api_calls, messages, run_target, singer_text, target_config


def _reasons(result, stream: str) -> dict[str, str]:
    out = {}
    for line in result.rejects:
        if line["stream"] != stream:
            continue
        record = line["record"]
        name = (record.get("code") or record.get("email") or record.get("Subject")
                or f"{record.get('first_name')} {record.get('last_name')}")
        out[name] = line["reason"]
    return out


def test_each_kind_of_bad_input_is_rejected_with_its_reason_and_the_rest_lands(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    big = tmp_path / "attachments" / "big.pdf"
    with big.open("wb") as fh:  # sparse: 10 MB + 1 byte without writing them
        fh.truncate(10 * 1024 * 1024 + 1)
    division = sandbox.divisions[0]

    result = run_target(config, messages("bad_records.singer"))

    assert isinstance(result.error, RecordsRejected)
    assert str(result.error).startswith("12 records rejected (accounts: 3, contacts: 3, documents: 6)")
    assert result.summary["accounts"] == {"created": 1, "updated": 0, "unchanged": 0, "rejected": 3}
    assert result.summary["contacts"] == {"created": 1, "updated": 0, "unchanged": 0, "rejected": 3}
    assert result.summary["documents"] == {"created": 1, "updated": 0, "unchanged": 0, "rejected": 6,
                                           "attachments_created": 1, "attachments_skipped": 0}

    accounts = _reasons(result, "accounts")
    assert accounts["BAD001"].startswith("missing mandatory field Name")
    assert accounts["BAD002"].startswith("division 999 is not granted to this app: run `tap-exactonline auth")
    assert accounts["BAD003"] == "IsSupplier: 'maybe' is not true or false"
    contacts = _reasons(result, "contacts")
    assert contacts["nobody@input.example"] == f"account code 'NOPE42' not found in division {division}"
    assert contacts["No Email"].startswith("natural key field Email is missing or empty")
    assert contacts["guid@input.example"] == "Account: 'not-a-guid' is not a GUID"
    documents = _reasons(result, "documents")
    assert documents["Bad base64"] == "content of 'x.pdf' is not valid base64"
    assert documents["Missing file"] == "attachment file 'no-such-file.pdf' not found in attachments_dir"
    assert documents["Too big"] == ("'big.pdf' is 10485761 bytes (10.0 MB); Exact accepts at most 10.0 MB "
                                    "(10485760 bytes) per attachment")
    assert documents["Outside the folder"] == \
        "attachment path '../accounts_contacts.singer' is outside attachments_dir"
    assert documents["Unknown type"] == "Exact refused it: Document type 999 does not exist. (HTTP 400)"
    assert documents["No type"].startswith("missing mandatory field Type")

    # Every reject line says where it belongs and never carries attachment content.
    for line in result.rejects:
        assert line["division"] in (division, 999, None)
        assert "this is not base64" not in json.dumps(line)
    bad_b64 = next(r for r in result.rejects if r["record"].get("Subject") == "Bad base64")
    assert bad_b64["record"]["Attachments"][0]["Attachment"].startswith("<")

    # The good ones landed, the bad ones did not.
    codes = {a["Code"].strip() for a in sandbox.records(division, "crm/Accounts")}
    assert "OK0001" in codes and not {"BAD001", "BAD002", "BAD003"} & codes
    emails = {c["Email"] for c in sandbox.records(division, "crm/Contacts")}
    assert "good@input.example" in emails and "nobody@input.example" not in emails
    subjects = {d["Subject"] for d in sandbox.records(division, "documents/Documents")}
    assert "Good document" in subjects
    assert not {"Bad base64", "Missing file", "Too big", "Outside the folder", "Unknown type", "No type"} & subjects
    # Validation happens before sending: the only refused call is the one only Exact could judge.
    refused = [c for c in api_calls(sandbox) if c["status"] and c["status"] >= 400]
    assert [(c["method"], c["path"], c["status"]) for c in refused] == [("POST", "documents/Documents", 400)]
    # The state still moves on: rejected records are accounted for in the reject file.
    assert result.states == [{"bookmarks": {"bad": "end"}}]


def test_division_not_granted_to_the_token_is_rejected_without_calls_to_it(sandbox, tmp_path):
    granted = sandbox.divisions[:1]
    config = target_config(sandbox, tmp_path, refresh_token=sandbox.mint_refresh_token(divisions=granted))
    other = sandbox.divisions[1]
    lines = [
        {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "G1", "Name": "Granted BV"}},
        {"type": "RECORD", "stream": "accounts", "record": {"Code": "G2", "Name": "Not granted BV", "Division": other}},
    ]
    result = run_target(config, singer_text(lines))
    assert result.summary["accounts"] == {"created": 1, "updated": 0, "unchanged": 0, "rejected": 1}
    assert result.rejects[0]["reason"].startswith(
        f"division {other} is not granted to this app: run `tap-exactonline auth")
    assert not [c for c in api_calls(sandbox) if c["division"] == other]


def test_no_division_anywhere_is_a_reject_not_a_guess(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    del config["default_division"]
    lines = [
        {"type": "SCHEMA", "stream": "items", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "items", "record": {"Code": "ART-NEW", "Description": "Nieuw artikel"}},
    ]
    result = run_target(config, singer_text(lines))
    assert result.rejects[0]["reason"] == "no Division in the record and no default_division in the config"
    assert api_calls(sandbox) == []


def test_stream_without_natural_key_is_a_config_error(sandbox, tmp_path):
    from exactonline_api.errors import ConfigError

    config = target_config(sandbox, tmp_path)
    lines = [{"type": "SCHEMA", "stream": "projects", "schema": {"properties": {}}, "key_properties": []}]
    result = run_target(config, json.dumps(lines[0]) + "\n")
    assert isinstance(result.error, ConfigError)
    assert "natural_keys.projects" in str(result.error)
    config["natural_keys"] = {"projects": ["code"]}
    assert run_target(config, json.dumps(lines[0]) + "\n").error is None


def test_reject_file_is_appended_and_never_holds_secrets(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    big = tmp_path / "attachments" / "big.pdf"
    with big.open("wb") as fh:
        fh.truncate(11 * 1024 * 1024)
    run_target(config, messages("bad_records.singer"))
    run_target(target_config(sandbox, tmp_path), messages("bad_records.singer"))
    text = (tmp_path / "rejects.jsonl").read_text()
    lines = text.splitlines()
    assert len({json.loads(line)["run_started_at"] for line in lines}) == 2
    for secret in (config["client_secret"], config["refresh_token"]):
        assert secret not in text
    assert os.path.getsize(tmp_path / "rejects.jsonl") < 20_000
