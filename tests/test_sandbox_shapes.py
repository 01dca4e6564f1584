"""The sandbox answers with Exact's real value shapes (REFERENCE.md 14.4) by default, each behind a knob."""

from __future__ import annotations

import json

import pytest

ACCOUNTS = "crm/Accounts"
LINES = "sync/Financial/TransactionLines"


def _get(api, path: str, select: str, **params: str):
    return api.get(101, path, {"$select": select, "$filter": "ID ne null" if path == ACCOUNTS else "", **params})


def test_real_shapes_by_default(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    lines = _get(api, LINES, "ID,Date,Modified,ExchangeRate,AmountDC", **{"$filter": "Timestamp gt 1L"})
    raw = lines.content
    assert b'"Date":"\\/Date(' in raw and b"/Date(" not in raw.replace(b"\\/", b"")  # every slash escaped
    rows = lines.json()["d"]["results"]
    assert any(r["ExchangeRate"] == 1 and b'"ExchangeRate":1,' in raw for r in rows)  # 1.0 written as 1
    assert all(int(r["Date"][6:-2]) % 86_400_000 == 0 for r in rows)  # calendar dates: local midnight

    accounts = _get(api, ACCOUNTS, "ID,Code,Country,Language,SearchCode").json()["d"]["results"]
    assert accounts and all(a["Country"] == "NL " and a["Language"] == "NL".ljust(10) for a in accounts)
    assert all(len(a["Code"]) == 18 and a["Code"].strip() == a["Code"][-len(a["Code"].strip()):] for a in accounts)

    stamp = api.get(101, "read/sync/Sync/SyncTimestamp",
                    {"modified": "datetime'2024-01-01'", "endPoint": "'TransactionLines'"}).json()
    assert isinstance(stamp["d"], list)  # a function: the bare array


def test_a_filter_on_a_padded_field_matches_the_unpadded_literal(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    found = _get(api, ACCOUNTS, "ID,Country", **{"$filter": "Country eq 'NL'"}).json()["d"]["results"]
    assert found and all(a["Country"] == "NL " for a in found)  # SQL Server ignores trailing blanks


@pytest.mark.parametrize("knob, plain", [
    ("escape_slashes", lambda raw: b"\\/" not in raw and b'"/Date(' in raw),
    ("whole_doubles_as_integers", lambda raw: b'"ExchangeRate":1.0' in raw),
    ("pad_fixed_width", lambda raw: {a["Country"] for a in json.loads(raw)["d"]["results"]} == {"NL"}),
])
def test_each_shape_has_a_knob(sandbox_factory, sandbox_client, knob, plain):
    api = sandbox_client(sandbox_factory(**{knob: False}))
    if knob == "pad_fixed_width":
        response = _get(api, ACCOUNTS, "ID,Country")
    else:
        response = _get(api, LINES, "ID,Date,ExchangeRate", **{"$filter": "Timestamp gt 1L"})
    assert plain(response.content)


def test_bare_arrays_and_midnight_dates_have_knobs(sandbox_factory, sandbox_client):
    sandbox = sandbox_factory(bare_array_functions=False, calendar_date_time="13:30")
    api = sandbox_client(sandbox)
    stamp = api.get(101, "read/sync/Sync/SyncTimestamp",
                    {"modified": "datetime'2024-01-01'", "endPoint": "'TransactionLines'"}).json()
    assert isinstance(stamp["d"]["results"], list)
    rows = _get(api, LINES, "ID,Date,Modified", **{"$filter": "Timestamp gt 1L"}).json()["d"]["results"]
    assert all(int(r["Date"][6:-2]) % 86_400_000 == (13 * 60 + 30) * 60_000 for r in rows)
