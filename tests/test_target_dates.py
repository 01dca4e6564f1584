"""target-exactonline writes a calendar date as the day it names, whatever form the date comes in.

A warehouse loaded by this tap holds ``2024-01-01``; one loaded by an older version holds the UTC
instant of that local midnight, ``2023-12-31T23:00:00+00:00``. Both are 1 January in Exact, and a
round trip (tap -> warehouse -> target) keeps every date and writes nothing.
"""

from __future__ import annotations

from datetime import datetime

from tests.taprun import run_tap, tap_config
from tests.targetrun import run_target, singer_text, target_config, writes

NEW_YEAR_MS = int((datetime(2024, 1, 1) - datetime(1970, 1, 1)).total_seconds() * 1000)
FORMS = {
    "WD-DAY": "2024-01-01",  # what the tap emits now (a date column)
    "WD-UTC": "2023-12-31T23:00:00+00:00",  # the old tap's UTC instant of that midnight
    "WD-NOON": "2024-01-01T12:00:00+01:00",  # a date-time with a time of day: the day counts
}


def _accounts(records: list[dict]) -> str:
    schema = {"type": "object", "properties": {k: {} for k in records[0]}}
    return singer_text([{"type": "SCHEMA", "stream": "accounts", "schema": schema, "key_properties": ["Code"]},
                        *({"type": "RECORD", "stream": "accounts", "record": r} for r in records)])


def test_dates_and_date_times_land_as_the_same_local_day_and_round_trip(sandbox, tmp_path):
    division = sandbox.divisions[0]
    records = [{"Code": code, "Name": f"Datum {code}", "StartDate": value} for code, value in FORMS.items()]
    result = run_target(target_config(sandbox, tmp_path), _accounts(records))
    assert result.error is None, result.error
    assert result.summary["accounts"]["created"] == 3
    stored = {a["Code"].strip(): a for a in sandbox.records(division, "crm/Accounts") if a["Code"].strip() in FORMS}
    assert {code: a["StartDate"] for code, a in stored.items()} == {code: f"/Date({NEW_YEAR_MS})/" for code in FORMS}

    # Tap -> warehouse -> target: the tap's own rows (trimmed codes, dates as days) change nothing.
    output = run_tap(tap_config(sandbox, tmp_path / "tap", divisions=[division]), streams={"accounts"})
    ours = [r for r in output.records["accounts"] if r["Code"] in FORMS]
    assert {r["Code"]: r["StartDate"] for r in ours} == {code: "2024-01-01" for code in FORMS}
    fed_back = [{k: r[k] for k in ("Code", "Name", "StartDate")} for r in ours]
    fed_back[0]["Code"] = fed_back[0]["Code"].rjust(18)  # Exact's own padded form finds the same account
    sandbox.reset_log()
    again = run_target(target_config(sandbox, tmp_path / "again", verify_unchanged=True), _accounts(fed_back))
    assert again.error is None, again.error
    assert again.summary["accounts"]["unchanged"] == 3, again.summary
    assert writes(sandbox) == []
