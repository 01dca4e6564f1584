"""Exact's /Date(ms)/ is Amsterdam wall-clock time; our output is UTC whatever TZ says."""

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from exactonline_api.timeutil import (
    exact_date_literal,
    filter_datetime,
    parse_exact_datetime,
)

# 2024-07-01 14:00 Amsterdam (CEST, +02:00) written by Exact as if it were UTC.
SUMMER = "/Date(1719842400000)/"
# 2024-01-15 09:30 Amsterdam (CET, +01:00).
WINTER = "/Date(1705311000000)/"


def test_summer_and_winter_offsets():
    assert parse_exact_datetime(SUMMER) == "2024-07-01T12:00:00+00:00"
    assert parse_exact_datetime(WINTER) == "2024-01-15T08:30:00+00:00"


def test_dst_switch_hours():
    # 2024-03-31 01:30 local is still CET (+1); 03:30 local is CEST (+2).
    before = datetime(2024, 3, 31, 1, 30, tzinfo=timezone.utc)
    after = datetime(2024, 3, 31, 3, 30, tzinfo=timezone.utc)
    as_local = lambda d: f"/Date({int(d.timestamp() * 1000)})/"  # noqa: E731
    assert parse_exact_datetime(as_local(before)) == "2024-03-31T00:30:00+00:00"
    assert parse_exact_datetime(as_local(after)) == "2024-03-31T01:30:00+00:00"


def test_round_trip_through_exact_literal():
    moment = datetime(2023, 11, 5, 23, 59, 59, tzinfo=timezone.utc)
    assert parse_exact_datetime(exact_date_literal(moment)) == "2023-11-05T23:59:59+00:00"


def test_filters_are_written_in_exact_local_time():
    assert filter_datetime(datetime(2024, 7, 1, 12, 0, tzinfo=timezone.utc)) == "datetime'2024-07-01T14:00:00'"
    assert filter_datetime(datetime(2024, 1, 1, 0, 0, tzinfo=timezone.utc)) == "datetime'2024-01-01T01:00:00'"
    # milliseconds survive, or a bookmark would match its own row again
    assert filter_datetime(datetime(2024, 1, 1, 0, 0, 0, 882000, tzinfo=timezone.utc)) == \
        "datetime'2024-01-01T01:00:00.882'"


@pytest.mark.parametrize("value", [None, "", "/Date(abc)/", "not a date", 12])
def test_odd_values_become_null_not_crashes(value):
    assert parse_exact_datetime(value) is None


def test_naive_iso_input_is_exact_local():
    assert parse_exact_datetime("2024-07-01T14:00:00") == "2024-07-01T12:00:00+00:00"


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata", "Europe/Amsterdam", "Pacific/Chatham"])
def test_host_time_zone_does_not_matter(tz):
    code = (
        "import json, time; time.tzset();"
        "from exactonline_api.timeutil import parse_exact_datetime as p, filter_datetime as f;"
        "from datetime import datetime, timezone;"
        f"print(json.dumps([p({SUMMER!r}), p({WINTER!r}), f(datetime(2024,7,1,12,tzinfo=timezone.utc))]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TZ": tz},
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["2024-07-01T12:00:00+00:00", "2024-01-15T08:30:00+00:00",
                               "datetime'2024-07-01T14:00:00'"]


def test_fast_iso_formatting_equals_isoformat():
    import random
    from datetime import datetime, timedelta, timezone

    from exactonline_api.timeutil import _iso_utc

    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(20261121)
    samples = [0, 1, 999, 1000, -1, -86_400_001, 1_577_836_800_000, 253_402_300_799_999]
    samples += [rng.randint(-2_000_000_000_000, 4_000_000_000_000) for _ in range(20_000)]
    for ms in samples:
        assert _iso_utc(ms) == (epoch + timedelta(milliseconds=ms)).isoformat(), ms
