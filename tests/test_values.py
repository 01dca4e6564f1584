"""Warehouse-true values: calendar dates as the dates Exact shows, moments as UTC, codes trimmed.

Expected values are computed here from the sandbox's raw ``/Date(ms)/`` numbers with zoneinfo,
independently of ``exactonline_api.timeutil``.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from zoneinfo import ZoneInfo

import msgspec
import pytest

from exactonline_api import datekinds
from exactonline_api.errors import ConfigError
from exactonline_api.registry import entities
from tap_exactonline.pages import TypedRows, rows
from tap_exactonline.schema import record_converter
from tap_exactonline.tap import TapExactOnline
from tests.taprun import run_tap, tap_config

AMS = ZoneInfo("Europe/Amsterdam")
LINES = "financialtransaction/TransactionLines"


def _local_ms(raw: str) -> int:
    return int(raw[len("/Date("):-len(")/")])


def shown_date(raw: str) -> str:
    """The day Exact shows for a stored calendar date (its Amsterdam wall-clock day)."""
    return (datetime(1970, 1, 1) + timedelta(milliseconds=_local_ms(raw))).date().isoformat()


def utc_instant(raw: str) -> datetime:
    wall = datetime(1970, 1, 1) + timedelta(milliseconds=_local_ms(raw))
    return wall.replace(tzinfo=AMS).astimezone(timezone.utc)


def test_the_shipped_table_is_the_rule():
    shipped = resources.files("exactonline_api").joinpath("data/datetime_kinds.tsv").read_text()
    assert shipped == datekinds.table(), \
        "regenerate: python -m exactonline_api.datekinds > exactonline_api/data/datetime_kinds.tsv"


@pytest.mark.parametrize("name", ["Date", "InvoiceDate", "DueDate", "DocumentDate", "StartDate", "EndDate",
                                  "ValidFrom", "ValidTo", "BirthDate", "FreeDateField_01", "From", "To"])
def test_calendar_dates(name):
    assert datekinds.rule(name)[0] == datekinds.DATE


@pytest.mark.parametrize("name", ["Created", "Modified", "DeletedDate", "StartTime", "EndTime", "LastUpdated",
                                  "DivisionMoveDate", "syscreated", "Approved"])
def test_moments(name):
    assert datekinds.rule(name)[0] == datekinds.MOMENT


def test_schema_says_date_for_calendar_dates_and_date_time_for_moments(tmp_path):
    tap = TapExactOnline(config={"client_id": "x", "client_secret": "y", "token_store": str(tmp_path / "t.json"),
                                 "date_fields": {"sales_invoices": {"DueDate": "moment"}}})
    lines = tap.streams["transaction_lines"].schema["properties"]
    assert lines["Date"] == {"type": ["string", "null"], "format": "date"} | {
        k: v for k, v in lines["Date"].items() if k == "description"}
    assert lines["Created"]["format"] == lines["Modified"]["format"] == "date-time"
    invoices = tap.streams["sales_invoices"].schema["properties"]
    assert invoices["InvoiceDate"]["format"] == "date"
    assert invoices["DueDate"]["format"] == "date-time"  # the user's override


@pytest.mark.parametrize("setting, problem", [
    ({"transaction_lines": {"Date": "day"}}, "'day' is not 'date' or 'moment'"),
    ({"no_such_stream": {"Date": "date"}}, "no stream 'no_such_stream'"),
    ({"transaction_lines": {"Description": "date"}}, "has no Edm.DateTime property 'Description'"),
    ({"transaction_lines.Date": {"Date": "moment"}}, "no stream 'transaction_lines.Date'"),
])
def test_a_bad_date_fields_setting_gets_one_line(tmp_path, setting, problem):
    with pytest.raises(ConfigError) as caught:
        TapExactOnline(config={"client_id": "x", "client_secret": "y", "token_store": str(tmp_path / "t.json"),
                               "date_fields": setting})
    assert problem in str(caught.value) and "\n" not in str(caught.value)


# -- the decoders take Exact's real shapes ---------------------------------------------------------

REAL_PAGE = (b'{"d":{"results":[{"__metadata":{"uri":"https:\\/\\/start.exactonline.nl\\/api\\/v1\\/1\\/x"},'
             b'"ID":"a1","Division":7,"Timestamp":"123","AmountDC":9075,"AccountCode":"                 8",'
             b'"VATCode":"02 ","Description":"said \\"  hi\\" ","Date":"\\/Date(1672531200000)\\/",'
             b'"Created":"\\/Date(1672574400123)\\/"}],"__next":"https:\\/\\/start.exactonline.nl\\/next"}}')
FIELDS = ["ID", "Division", "Timestamp", "AmountDC", "AccountCode", "VATCode", "Description", "Date", "Created"]


def test_the_typed_decoder_takes_every_real_shape_without_falling_back():
    entity = entities()["transaction_lines"]
    typed = TypedRows(entity, FIELDS)
    page = typed.decode(REAL_PAGE)  # a ValidationError here would mean the slow generic path
    assert isinstance(page, msgspec.Struct)
    record = msgspec.json.decode(msgspec.json.encode(typed.convert(rows(page)[0], 7)))
    generic = record_converter(entity, keep=FIELDS)(msgspec.json.decode(REAL_PAGE)["d"]["results"][0], 7)
    assert record == generic
    assert record["AmountDC"] == 9075.0 and record["AccountCode"] == "8" and record["VATCode"] == "02"
    assert record["Description"] == 'said "  hi"'  # blanks after a quote inside text are text
    assert record["Date"] == "2023-01-01"
    assert record["Created"] == "2023-01-01T11:00:00.123000+00:00"


def test_a_bare_array_envelope_is_read_by_the_typed_decoder():
    typed = TypedRows(entities()["transaction_lines"], ["ID", "Division", "Date"])
    page = typed.decode(b'{"d":[{"ID":"a","Division":1,"Date":"\\/Date(1703980800000)\\/"}]}')
    assert isinstance(page, msgspec.Struct)
    assert [typed.convert(r, 1).Date for r in rows(page)] == ["2023-12-31"]


def test_trim_text_false_keeps_exacts_padding():
    entity = entities()["transaction_lines"]
    typed = TypedRows(entity, FIELDS, trim=False)
    row = typed.convert(rows(typed.decode(REAL_PAGE))[0], 7)
    generic = record_converter(entity, keep=FIELDS, trim=False)(msgspec.json.decode(REAL_PAGE)["d"]["results"][0], 7)
    assert row.AccountCode == generic["AccountCode"] == "                 8"
    assert row.VATCode == "02 "


# -- through the tap, against the sandbox, under three host time zones -----------------------------

@pytest.fixture
def host_tz(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def _edge_entries(sandbox, division: int) -> None:
    """Entries on 1 January and 31 December, the days a UTC instant moves to another year."""
    lines = []
    for number, (day, year) in enumerate([(date(2024, 1, 1), 2024), (date(2023, 12, 31), 2023)], start=1):
        local_ms = int((datetime(day.year, day.month, day.day) - datetime(1970, 1, 1)).total_seconds() * 1000)
        lines.append({"ID": f"00000000-0000-4000-8000-00000000000{number}", "Date": f"/Date({local_ms})/",
                      "FinancialYear": year, "FinancialPeriod": day.month, "AmountDC": 100.0 * number,
                      "Division": division})
    sandbox.insert(division, LINES, *lines)


@pytest.mark.parametrize("host_tz", ["America/Los_Angeles", "UTC", "Asia/Tokyo"], indirect=True)
def test_the_same_dates_under_any_host_time_zone(sandbox, tmp_path, host_tz):
    division = sandbox.divisions[0]
    _edge_entries(sandbox, division)
    output = run_tap(tap_config(sandbox, tmp_path, divisions=[division]), streams={"transaction_lines"})
    raw = {r["ID"]: r for r in sandbox.records(division, LINES)}
    records = output.records["transaction_lines"]
    assert len(records) == len(raw)
    for record in records:
        stored = raw[record["ID"]]
        assert record["Date"] == shown_date(stored["Date"])
        assert datetime.fromisoformat(record["Modified"]) == utc_instant(stored["Modified"])
    edge = {r["ID"]: r["Date"] for r in records if r["ID"] in EDGE_IDS}
    assert edge == {EDGE_IDS[0]: "2024-01-01", EDGE_IDS[1]: "2023-12-31"}


EDGE_IDS = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"]


def test_a_calendar_date_off_midnight_keeps_its_day_and_warns_once(sandbox_factory, tmp_path, caplog):
    sandbox = sandbox_factory(calendar_date_time="13:30")
    division = sandbox.divisions[0]
    with caplog.at_level(logging.WARNING, logger="tap_exactonline"):
        output = run_tap(tap_config(sandbox, tmp_path, divisions=[division]), streams={"transaction_lines"})
    raw = {r["ID"]: r for r in sandbox.records(division, LINES)}
    records = output.records["transaction_lines"]
    assert all(r["Date"] == shown_date(raw[r["ID"]]["Date"]) for r in records)
    warnings = [m for m in caplog.messages if "transaction_lines.Date is a calendar date" in m]
    assert len(warnings) == 1 and "/Date(" in warnings[0] and "kept its local date" in warnings[0]
