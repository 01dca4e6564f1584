"""Bad Singer input ends the run in one line naming the input line; nothing past the last good
record is acknowledged, and nothing before it is lost (issue 15, items 1-2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from target_exactonline.singer_input import BadSingerInput
from tests.targetrun import api_calls, run_target, target_config

EXE = str(Path(sys.executable).parent / "target-exactonline")
SCHEMA = {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}, "key_properties": []}


def _record(code: str) -> dict:
    return {"type": "RECORD", "stream": "accounts", "record": {"Code": code, "Name": f"{code} BV"}}


def _state(n: int) -> dict:
    return {"type": "STATE", "value": {"bookmarks": {"accounts": n}}}


def _run(config: dict, tmp_path: Path, lines: list[str]) -> subprocess.CompletedProcess:
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "input.singer").write_text("\n".join(lines) + "\n")
    return subprocess.run([EXE, "--config", str(tmp_path / "config.json"), "--input", str(tmp_path / "input.singer")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=dict(os.environ))


def _lines(bad: str) -> list[str]:
    lines = [json.dumps(m) for m in (SCHEMA, _record("IN01"), _record("IN02"), _state(2))]
    return lines + [bad, json.dumps(_record("IN03")), json.dumps(_state(3))]


@pytest.mark.parametrize("bad,problem", [
    (json.dumps({"type": "RECORD", "stream": "contacts", "record": {"Email": "a@b.nl"}}),
     "input line 5: a RECORD of stream 'contacts' comes before that stream's SCHEMA message"),
    (json.dumps({"type": "RECORD", "stream": "accounts", "record": "IN01"}),
     "input line 5: RECORD message without a valid 'record' (dict expected)"),
    ("[1, 2]", "input line 5: a Singer message is a JSON object, this is a JSON list"),
    (json.dumps({"type": "RECORDS", "stream": "accounts"}), "input line 5: unknown Singer message type 'RECORDS'"),
])
def test_each_kind_of_bad_line_is_named_with_its_number(sandbox, tmp_path, bad, problem):
    result = run_target(target_config(sandbox, tmp_path), "\n".join(_lines(bad)) + "\n")
    assert isinstance(result.error, BadSingerInput)
    assert str(result.error).startswith(problem)
    assert result.states == [{"bookmarks": {"accounts": 2}}]
    assert result.summary["accounts"]["created"] == 2


def test_bad_line_is_one_line_and_state_stops_at_the_last_good_record(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    division = sandbox.divisions[0]
    problem = "input line 5: not JSON (Expecting value at column"
    lines = _lines('{"type": "RECORD", "stream": "accounts", "record": {"Code": ')
    proc = _run(config, tmp_path, lines)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"target-exactonline: {problem}")
    assert last.endswith("The records before it were written and no state past them was acknowledged; fix that "
                         "line and run again")
    assert sum("input line 5" in line for line in proc.stderr.splitlines()) == 1
    # The records before the bad line are in Exact and their state is acknowledged; nothing after it.
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [{"bookmarks": {"accounts": 2}}]
    codes = {a["Code"].strip() for a in sandbox.records(division, "crm/Accounts")}
    assert {"IN01", "IN02"} <= codes and "IN03" not in codes

    # Fixed input: the rerun repeats nothing (the ledger knows IN01, IN02) and skips nothing.
    sandbox.reset_log()
    lines[4] = json.dumps(_record("IN04"))
    fixed = _run(config, tmp_path, lines)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert [json.loads(line) for line in fixed.stdout.splitlines()] == [{"bookmarks": {"accounts": 3}}]
    posts = sorted(c["status"] for c in api_calls(sandbox) if c["method"] == "POST")
    assert posts == [201, 201]
    codes = {a["Code"].strip() for a in sandbox.records(division, "crm/Accounts")}
    assert {"IN01", "IN02", "IN03", "IN04"} <= codes
