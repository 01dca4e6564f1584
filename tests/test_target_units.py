"""The target's diff and lookup building, with fakes (milliseconds, no sandbox)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from exactonline_api import odata
from exactonline_api.errors import ExactAPIError, ExactError
from exactonline_api.registry import endpoints
from target_exactonline.connector import ExactWriter
from target_exactonline.records import Item
from target_exactonline.rejects import RejectFile
from target_exactonline.upsert import EntityUpserter

BASE = "https://start.exactonline.nl"
ACCOUNTS = endpoints()["crm/Accounts"]
CONTACTS = endpoints()["crm/Contacts"]


class FakeSession:
    """Answers every GET with no rows (or ``pages``), remembers URLs; refuses writes on demand."""

    def __init__(self, refuse: ExactAPIError | None = None) -> None:
        self.urls: list[str] = []
        self.refuse = refuse
        self.sleep = lambda s: None

    def get_json(self, url: str) -> dict:
        self.urls.append(url)
        return {"d": {"results": []}}

    def post(self, url: str, **kwargs) -> None:
        self.urls.append(f"POST {url}")
        raise self.refuse or AssertionError("no POST expected")


class FakeWriter(ExactWriter):
    def __init__(self) -> None:
        super().__init__(FakeSession(), BASE)  # type: ignore[arg-type]
        self.puts: list[tuple] = []

    def update(self, endpoint, division, ident, body, *, describe):  # noqa: ANN001
        self.puts.append((endpoint.path, division, ident, dict(body)))


def test_keys_are_joined_into_url_sized_lookups_and_a_key_too_long_is_handed_back():
    writer = ExactWriter(FakeSession(), BASE)  # type: ignore[arg-type]
    email = CONTACTS.field("Email")
    keys = [(f"person.{i:04d}@example.com",) for i in range(400)] + [("x" * 7000 + "@example.com",), ("o'brien@x.nl",)]
    too_long: list[tuple] = []
    writer.find(CONTACTS, 101, [email], keys, ["ID", "Email"], too_long=lambda key, n: too_long.append((key, n)))
    urls = writer.session.urls
    assert 2 <= len(urls) <= 6  # hundreds of keys, a handful of calls
    assert all(len(url) <= odata.MAX_URL_LENGTH for url in urls)
    filters = " or ".join(unquote(url.split("$filter=", 1)[1]) for url in urls)
    assert filters.count("Email eq '") == 401 and "Email eq 'o''brien@x.nl'" in filters
    assert [(key[0][:3], n > 7000) for key, n in too_long] == [("xxx", True)]
    with pytest.raises(ExactError, match="longer than a URL can hold"):
        writer.find(CONTACTS, 101, [email], [("y" * 7000,)], ["ID"])


def test_padded_account_codes_are_looked_up_through_trim():
    writer = ExactWriter(FakeSession(), BASE)  # type: ignore[arg-type]
    writer.find(ACCOUNTS, 101, [ACCOUNTS.field("Code")], [("  WB1 ",)], ["ID", "Code", "Name"])
    assert unquote(writer.session.urls[0]).endswith("?$select=ID,Code,Name&$filter=trim(Code) eq 'WB1'")


def _upserter(tmp_path, writer) -> EntityUpserter:
    return EntityUpserter(writer=writer, stream="accounts", endpoint=ACCOUNTS, shaper=lambda r: Item(record=r),
                          rejects=RejectFile(tmp_path / "rejects.jsonl"), default_division=101, natural_key=("Code",))


def test_only_the_fields_that_differ_are_put(tmp_path):
    writer = FakeWriter()
    upserter = _upserter(tmp_path, writer)
    row = {"ID": "a1", "Code": "                 7", "Name": "Old BV", "City": "Utrecht", "Email": None,
           "IsSupplier": False, "Created": "/Date(1)/"}
    item = Item(record={}, division=101,
                values={"Code": "7", "Name": "New BV", "City": "Utrecht ", "Email": "", "IsSupplier": None})
    upserter.update(101, item, row)
    # Code: same once trimmed; City: surrounding blanks ignored; empty Email and IsSupplier: nothing to clear.
    assert writer.puts == [("crm/Accounts", 101, "a1", {"Name": "New BV"})]
    assert item.outcome == "updated" and upserter.tally.updated == 1
    same = Item(record={}, division=101, values={"Code": "7", "Name": "New BV"})
    upserter.update(101, same, dict(row, Name="New BV"))
    assert len(writer.puts) == 1 and same.outcome == "unchanged"


def test_a_refused_create_is_rejected_in_exacts_words_and_the_batch_goes_on(tmp_path):
    refusal = ExactAPIError(500, "Gegeven bestaat reeds.", "crm/Accounts", refusal=True)
    writer = ExactWriter(FakeSession(refuse=refusal), BASE)  # type: ignore[arg-type]
    upserter = _upserter(tmp_path, writer)
    items = [Item(record={"Code": c}, division=101, values={"Code": c, "Name": f"{c} BV"}) for c in ("A1", "A2")]
    upserter.process_division(101, items)
    assert [i.rejected for i in items] == [True, True]
    assert upserter.tally.rejected == 2 and upserter.tally.not_sent == 0
    posts = [u for u in writer.session.urls if u.startswith("POST")]
    assert len(posts) == 2  # each refused record sent once, no lookup-and-retry
