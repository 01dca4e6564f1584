"""Every Edm type, as Exact sends it on the wire, through both record paths of the tap.

The tap turns a page into records in one of two ways: the typed page decoder
(``pages.TypedRows``, the fast path) or, for a page that does not fit its types,
the generic decode plus ``schema.record_converter``. Both must give the same
record, and that record must fit the JSON schema the tap announces.
"""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import msgspec
import pytest

from exactonline_api import registry
from exactonline_api.registry import Field
from tap_exactonline.pages import TypedRows, rows
from tap_exactonline.schema import NUMBER_EDM, build_schema, record_converter

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"

# (Edm type, field name, value as Exact sends it, value in the Singer record)
CASES = [
    ("Edm.Guid", "Account", GUID, GUID),
    ("Edm.String", "Description", "Café / naïve \"quoted\"", "Café / naïve \"quoted\""),
    ("Edm.Int16", "Status", 20, 20),
    ("Edm.Int32", "Year", "2024", 2024),  # WCF may send any integer as a string
    ("Edm.Int64", "Timestamp", "9007199254740993", 9007199254740993),  # past a double's precision
    ("Edm.Byte", "Type", 3, 3),
    ("Edm.Double", "AmountDC", "-1234.5", -1234.5),
    ("Edm.Double", "Quantity", 2, 2.0),
    ("Edm.Decimal", "Rate", 0.21, 0.21),
    ("Edm.Boolean", "Blocked", True, True),
    # A moment: Amsterdam wall-clock ms (CET in November) -> UTC.
    ("Edm.DateTime", "Modified", "/Date(1700000000000)/", "2023-11-14T21:13:20+00:00"),
    ("Edm.Binary", "Attachment", "aGVsbG8=", "aGVsbG8="),
]


def _entity(edm: str, name: str) -> registry.Entity:
    """A stream with a key, Division and one field of the type under test."""
    base = registry.entities()["accounts"]
    fields = (Field("ID", "Edm.Guid", key=True), Field("Division", "Edm.Int32"), Field(name, edm))
    return dataclasses.replace(base, stream_name="edm_case", fields=fields, key=("ID", "Division"),
                               replication_key=None)


def _page(*wire_rows: dict) -> bytes:
    return json.dumps({"d": {"results": [
        {"__metadata": {"uri": "https://x/api/v1/101/edm_case", "type": "Exact.Web.Api.Models.X"}, **row}
        for row in wire_rows]}}).encode()


@pytest.mark.parametrize(("edm", "name", "wire", "expected"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_edm_type_reaches_the_record_as_exact_shows_it(edm, name, wire, expected):
    entity = _entity(edm, name)
    selected = ["ID", "Division", name]
    schema = build_schema(entity, tombstones=False)
    content = _page({"ID": GUID, "Division": 101, name: wire}, {"ID": GUID, "Division": None, name: None})

    generic = [record_converter(entity, selected)(row, 101) for row in msgspec.json.decode(content)["d"]["results"]]
    typed_rows = TypedRows(entity, selected)
    typed = [msgspec.to_builtins(typed_rows.convert(row, 101)) for row in rows(typed_rows.decode(content))]

    assert generic == typed == [{"ID": GUID, "Division": 101, name: expected},
                                {"ID": GUID, "Division": 101, name: None}]
    if edm not in NUMBER_EDM:  # an integral Double may stay a JSON integer; a number column takes both
        assert type(generic[0][name]) is type(typed[0][name]) is type(expected)
    for record in generic:
        jsonschema.validate(record, schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_the_cases_cover_every_edm_type_of_the_registry():
    used = {f.edm for e in registry.entities().values() for f in e.fields if not f.is_navigation}
    assert used <= {case[0] for case in CASES}
