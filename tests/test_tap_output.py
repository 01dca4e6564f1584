"""The record fast path: same messages as the SDK's path, and STATE never ahead of records."""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime, timezone

from tap_exactonline.output import ExactMessageWriter, RecordWriter
from tests.taprun import run_tap, tap_config

TL = "sync/Financial/TransactionLines"


def test_state_is_written_after_the_records_before_it(monkeypatch):
    from singer_sdk.singerlib import StateMessage

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", out)
    writer = ExactMessageWriter()
    records = RecordWriter("s", writer)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    for n in range(3):
        records.write({"ID": n, "Division": 1}, time_extracted=now, version=None)
    writer.write_message(StateMessage(value={"bookmarks": {"s": {"replication_key_value": 2}}}))
    records.write({"ID": 3, "Division": 1}, time_extracted=now, version=7)
    writer.write_message(StateMessage(value={"bookmarks": {"s": {"replication_key_value": 3}}}))
    out.flush()
    lines = [json.loads(line) for line in out.buffer.getvalue().decode().splitlines()]
    assert [m["type"] for m in lines] == ["RECORD"] * 3 + ["STATE", "RECORD", "STATE"]
    assert [m["record"]["ID"] for m in lines if m["type"] == "RECORD"] == [0, 1, 2, 3]
    assert "version" not in lines[0] and lines[4]["version"] == 7
    assert lines[0]["time_extracted"].startswith("2026-01-02T03:04:05")


def test_stream_maps_still_apply(sandbox, tmp_path):
    # A configured map sends records through the SDK's own path, which must still work.
    config = tap_config(sandbox, tmp_path, stream_maps={
        "journals": {"code_upper": "Code.upper()", "Description": "__NULL__"},
        "transaction_lines": {"__alias__": "lines"},
    })
    out = run_tap(config, streams={"journals", "transaction_lines"})
    journals = out.records["journals"]
    source = {(r["Code"], d) for d in sandbox.divisions for r in sandbox.records(d, "financial/Journals")}
    assert {(r["Code"], r["Division"]) for r in journals} == source
    assert all(r["code_upper"] == r["Code"].upper() and "Description" not in r for r in journals)
    lines = out.records["lines"]
    assert "transaction_lines" not in out.records
    assert len(lines) == sum(len(sandbox.records(d, TL)) for d in sandbox.divisions)


def test_plain_records_carry_only_the_selected_properties(sandbox, tmp_path):
    from tests.taprun import catalog_selecting

    config = tap_config(sandbox, tmp_path)
    catalog = catalog_selecting(config, {"transaction_lines"}, {"transaction_lines": {"AmountDC", "Date"}})
    out = run_tap(config, catalog=catalog)
    assert out.records["transaction_lines"]
    # keys and the replication key are automatic; everything else was deselected
    assert {frozenset(r) for r in out.records["transaction_lines"]} == {
        frozenset({"ID", "Division", "Timestamp", "AmountDC", "Date"})}
