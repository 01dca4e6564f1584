from datetime import datetime, timezone

import pytest

from exactonline_api import odata


def test_string_literals_double_single_quotes():
    assert odata.string_literal("O'Brien & Zn's") == "'O''Brien & Zn''s'"


@pytest.mark.parametrize(("value", "edm", "expected"), [
    ("5B3DEBEF-9B1C-4BCD-B7AE-003E8D4139DF", "Edm.Guid", "guid'5b3debef-9b1c-4bcd-b7ae-003e8d4139df'"),
    (123, "Edm.Int64", "123L"),
    ("7", "Edm.Int32", "7"),
    (True, "Edm.Boolean", "true"),
    ("1024", "Edm.String", "'1024'"),
    (datetime(2024, 1, 31, 12, tzinfo=timezone.utc), "Edm.DateTime", "datetime'2024-01-31T13:00:00'"),
])
def test_literals(value, edm, expected):
    assert odata.literal(value, edm) == expected


def test_bad_guid_is_refused_not_sent():
    with pytest.raises(ValueError):
        odata.literal("x' or 1 eq 1 or ID eq guid'", "Edm.Guid")


def test_or_batches_respect_the_budget_and_keep_every_clause():
    clauses = [f"Code eq '{i:05d}'" for i in range(500)]
    batches = list(odata.batch_or_filters(clauses, budget=1000))
    assert len(batches) > 1
    assert all(odata.encoded_length(text) <= 1000 for text, _ in batches)
    assert [i for _, idx in batches for i in idx] == list(range(500))


def test_single_clause_over_budget_is_an_error():
    with pytest.raises(ValueError, match="URL limit"):
        list(odata.batch_or_filters(["Name eq '" + "x" * 200 + "'"], budget=100))


def test_envelopes():
    page = {"d": {"results": [{"ID": 1}], "__next": "https://x/api?$skiptoken=2L"}}
    assert odata.results(page) == [{"ID": 1}]
    assert odata.next_link(page) == "https://x/api?$skiptoken=2L"
    assert odata.results({"d": {"ID": 5}}) == [{"ID": 5}]
    assert odata.next_link({"d": {"results": []}}) is None
    with pytest.raises(ValueError):
        odata.results({"error": "x"})
    assert odata.error_message({"error": {"code": "", "message": {"lang": "", "value": "VAT invalid"}}}) == "VAT invalid"
