"""Typed page decoding gives the records the generic path gives, and falls back on odd pages."""

from __future__ import annotations

import json

import msgspec
import pytest

from exactonline_api.http import ExactSession
from exactonline_api.registry import entities
from tap_exactonline.pages import TypedRows
from tap_exactonline.schema import record_converter
from tests.taprun import run_tap, tap_config

STREAMS = {"transaction_lines", "receivables", "journals", "gl_accounts"}


def test_typed_and_generic_paths_emit_the_same_records(sandbox, tmp_path):
    typed = run_tap(tap_config(sandbox, tmp_path), streams=STREAMS)
    # A stream map (here a no-op alias per stream) sends every stream down the SDK's generic path.
    maps = {name: {"__alias__": name} for name in STREAMS}
    generic = run_tap(tap_config(sandbox, tmp_path / "g", stream_maps=maps), streams=STREAMS)
    for name in STREAMS:
        key = entities()[name].key
        a = {tuple(r[k] for k in key): r for r in typed.records[name]}
        b = {tuple(r[k] for k in key): r for r in generic.records[name]}
        assert a and a.keys() == b.keys(), name
        for k, record in a.items():
            assert record == b[k], (name, k)  # 5 == 5.0: a Double sent as 5 is the same number


def page(rows: list[dict], next_link: str | None = None) -> bytes:
    body: dict = {"results": rows}
    if next_link:
        body["__next"] = next_link
    return json.dumps({"d": body}).encode()


def test_numeric_strings_and_dates_are_converted_like_the_generic_converter():
    entity = entities()["transaction_lines"]
    fields = ["ID", "Division", "Timestamp", "AmountDC", "LineNumber", "Date", "Description"]
    row = {"__metadata": {"uri": "x", "type": "y"}, "ID": "a1", "Division": None, "Timestamp": "123456789012",
           "AmountDC": "12.50", "LineNumber": 3, "Date": "/Date(1577836800000)/", "Description": "x"}
    typed = TypedRows(entity, fields)
    decoded = typed.decode(page([row], "https://start.exactonline.nl/api/v1/next"))
    assert decoded.d.next == "https://start.exactonline.nl/api/v1/next"
    got = msgspec.json.decode(msgspec.json.encode(typed.convert(decoded.d.results[0], 101)))
    expected = record_converter(entity, keep=fields)(dict(row), 101)
    assert got == expected
    assert got["Timestamp"] == 123456789012 and got["AmountDC"] == 12.5 and got["Division"] == 101
    assert got["Date"] == "2020-01-01"  # the day Exact shows, not the UTC instant of its midnight


class _Response:
    def __init__(self, content: bytes) -> None:
        self.content = content


@pytest.mark.parametrize("odd", [{"AmountDC": "not a number"}, {"Description": 42}, {"LineNumber": "2.5"}])
def test_a_page_that_does_not_fit_is_read_the_generic_way(odd):
    entity = entities()["transaction_lines"]
    fields = ["ID", "Division", "AmountDC", "LineNumber", "Description"]
    content = page([{"ID": "a", "Division": 1, "AmountDC": 1.0, "LineNumber": 1, "Description": "d"},
                    {"ID": "b", "Division": 1, "AmountDC": 2.0, "LineNumber": 2, "Description": "e", **odd}])
    payload = ExactSession._json_or_none(_Response(content), TypedRows(entity, fields).decode)
    assert isinstance(payload, dict)  # the generic decode: nothing is lost to the odd value
    assert [r["ID"] for r in payload["d"]["results"]] == ["a", "b"]


def test_a_malformed_page_is_still_a_page_to_read_again():
    entity = entities()["transaction_lines"]
    assert ExactSession._json_or_none(_Response(b'{"d": {"results": [{"ID": '),
                                      TypedRows(entity, ["ID", "Division"]).decode) is None
