"""The writeback job through Meltano: CSV file -> tap-spreadsheets -> target-exactonline -> Exact."""

from __future__ import annotations

import json
import os
import time

import pytest

pytestmark = pytest.mark.e2e

ACCOUNTS = "crm/Accounts"


def write_csv(path, rows: list[tuple[str, str, str]]) -> None:
    lines = ["code,name,city"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def accounts_by_code(exact, division: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in exact.records(division, ACCOUNTS):
        out.setdefault(str(row.get("Code") or "").strip(), []).append(row)
    return out


def writes(exact) -> list[dict]:
    return [r for r in exact.log() if r.get("method") in ("POST", "PUT", "PATCH", "DELETE")
            and not str(r.get("path", "")).startswith(("oauth2", "/api/oauth2", "api/oauth2"))]


def test_csv_writeback_creates_updates_and_is_idempotent(meltano, exact, tmp_path):
    division = exact.divisions[0]
    csv = tmp_path / "accounts.csv"
    write_csv(csv, [("WB0001", "Writeback One BV", "Utrecht"), ("WB0002", "Writeback Two BV", "Delft")])
    files = json.dumps([{"path": str(csv), "format": "csv", "table_name": "accounts", "primary_keys": ["code"]}])
    env = {"TAP_SPREADSHEETS_FILES": files, "TARGET_EXACTONLINE_DEFAULT_DIVISION": str(division)}

    meltano("run", "csv-to-exact", env=env)
    by_code = accounts_by_code(exact, division)
    assert [r["Name"] for r in by_code["WB0001"]] == ["Writeback One BV"]
    assert [r["Name"] for r in by_code["WB0002"]] == ["Writeback Two BV"]
    assert not (tmp_path / "rejects.jsonl").exists() or not (tmp_path / "rejects.jsonl").read_text().strip()

    # The same file again, ignoring the file tap's bookmark: nothing is written to Exact.
    exact.reset_log()
    meltano("run", "--full-refresh", "csv-to-exact", env=env)
    assert writes(exact) == [], writes(exact)
    by_code = accounts_by_code(exact, division)
    assert len(by_code["WB0001"]) == 1 and len(by_code["WB0002"]) == 1

    # A changed row is updated in place, not duplicated.
    write_csv(csv, [("WB0001", "Writeback One Renamed BV", "Utrecht"), ("WB0002", "Writeback Two BV", "Delft")])
    later = time.time() + 5  # the file tap is incremental on the file's mtime (1 s resolution)
    os.utime(csv, (later, later))
    meltano("run", "csv-to-exact", env=env)
    by_code = accounts_by_code(exact, division)
    assert [r["Name"] for r in by_code["WB0001"]] == ["Writeback One Renamed BV"]
    assert len(by_code["WB0002"]) == 1
