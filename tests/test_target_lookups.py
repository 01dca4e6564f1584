"""target-exactonline: lookups cost few calls; filters fit Exact's URL limit; values are escaped."""

from __future__ import annotations

import math
from urllib.parse import quote

from exactonline_api import odata
from exactonline_api.registry import endpoints
from target_exactonline.fields import comparable, key_part, same, to_wire
from target_exactonline.connector import ExactWriter
from tests.targetrun import api_calls, run_target, singer_text, target_config, writes


def _contacts_text(n: int, suffix: str = "") -> str:
    lines = [{"type": "SCHEMA", "stream": "contacts", "schema": {"properties": {}}, "key_properties": []}]
    for i in range(n):
        lines.append({"type": "RECORD", "stream": "contacts", "record": {
            "email": f"a.rather.long.mailbox.name.number.{i:04d}@writeback-lookups.example",
            "last_name": f"Person {i}{suffix}"}})
    return singer_text(lines)


def test_a_big_batch_is_looked_up_in_url_sized_chunks_not_per_record(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(minutely_limit=100000)
    n = 250
    config = target_config(sandbox, tmp_path, batch_size=1000)
    first = run_target(config, _contacts_text(n))
    assert first.summary["contacts"]["created"] == n
    lookups = [c for c in api_calls(sandbox) if c["method"] == "GET" and c["path"] == "crm/Contacts"]
    # ~75 characters per key: 250 keys need a few URL-sized filters, not 250 lookups.
    assert 2 <= len(lookups) <= 6, len(lookups)
    for call in lookups:
        length = len(sandbox.url) + len("/api/v1/101/crm/Contacts?") + sum(
            len(k) + 1 + len(quote(v, safe="$'(),/:=*")) + 1 for k, v in call["query"].items())
        assert length <= odata.MAX_URL_LENGTH
        assert call["status"] == 200

    sandbox.reset_log()
    second = run_target(target_config(sandbox, tmp_path, batch_size=1000, verify_unchanged=True), _contacts_text(n))
    assert second.summary["contacts"] == {"created": 0, "updated": 0, "unchanged": n, "rejected": 0}
    assert writes(sandbox) == []
    gets = [c for c in api_calls(sandbox) if c["path"] == "crm/Contacts"]
    # Each chunk answers up to ~75 rows, i.e. at most two pages of 60: still far below one call per record.
    assert len(gets) <= 2 * len(lookups) + 1, len(gets)
    assert len(gets) < math.ceil(n / 60) * 3

    sandbox.reset_log()
    changed = run_target(target_config(sandbox, tmp_path, batch_size=1000), _contacts_text(n, " (moved)"))
    assert changed.summary["contacts"]["updated"] == n
    assert {c["method"] for c in writes(sandbox)} == {"PUT"}


def test_clause_escapes_quotes_and_uses_the_right_literals():
    accounts = endpoints()["crm/Accounts"]
    contacts = endpoints()["crm/Contacts"]
    attachments = endpoints()["documents/DocumentAttachments"]
    assert ExactWriter.clause(accounts, [accounts.field("Code")], [" O'Brien "]) == "trim(Code) eq 'O''Brien'"
    assert ExactWriter.clause(contacts, [contacts.field("Email")], ["o'neil@x.nl"]) == "Email eq 'o''neil@x.nl'"
    guid = "6A2B1C4D-0000-4000-8000-00000000000A"
    assert ExactWriter.clause(attachments, [attachments.field("Document"), attachments.field("FileName")],
                              [guid, "a&b #1.pdf"]) == \
        f"(Document eq guid'{guid.lower()}' and FileName eq 'a&b #1.pdf')"


def test_values_from_csv_text_become_exact_types():
    assert to_wire("Edm.Int32", "20") == 20
    assert to_wire("Edm.Int32", "20.0") == 20
    assert to_wire("Edm.Double", "12.50") == 12.5
    assert to_wire("Edm.Boolean", "Ja") is True and to_wire("Edm.Boolean", "0") is False
    assert to_wire("Edm.Guid", " 6A2B1C4D-0000-4000-8000-00000000000A ") == "6a2b1c4d-0000-4000-8000-00000000000a"
    assert to_wire("Edm.DateTime", "2024-03-01") == "2024-03-01T00:00:00"
    # An aware moment is written as Amsterdam wall-clock time (what Exact reads).
    assert to_wire("Edm.DateTime", "2024-06-30T22:00:00Z") == "2024-07-01T00:00:00"
    assert to_wire("Edm.Int32", "") is None and to_wire("Edm.String", "") == ""


def test_comparison_normalises_what_exact_answers():
    # Exact's /Date(ms)/ is Amsterdam wall-clock time; the tap's UTC ISO form is the same moment.
    assert same("Edm.DateTime", "/Date(1709251200000)/", "2024-03-01")
    assert same("Edm.DateTime", "/Date(1709251200000)/", "2024-02-29T23:00:00+00:00")
    assert not same("Edm.DateTime", "/Date(1709251200000)/", "2024-03-02")
    assert same("Edm.Guid", "6A2B1C4D-0000-4000-8000-00000000000A", "6a2b1c4d-0000-4000-8000-00000000000a")
    assert same("Edm.Int64", "12", 12)
    assert same("Edm.Double", 0.1 + 0.2, 0.3)
    assert same("Edm.String", "            WB0001", "WB0001")
    assert same("Edm.String", None, "")
    assert not same("Edm.String", "Utrecht", "utrecht")  # a case change is a change...
    assert key_part("Edm.String", "  Jan@X.nl") == key_part("Edm.String", "jan@x.nl")  # ...but the same key
    assert comparable("Edm.Boolean", "true") is True


def test_attachment_limit_follows_the_country_sites_message_limit():
    from target_exactonline.attachments import MAX_ATTACHMENT_BYTES, attachment_limit

    assert attachment_limit("nl") == attachment_limit("be") == attachment_limit(None) == MAX_ATTACHMENT_BYTES
    # 9.5 MB per request elsewhere, base64 included: about 7.1 MB of file.
    assert 7_400_000 < attachment_limit("de") < 7_470_000
