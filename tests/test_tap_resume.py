"""A run killed with SIGKILL at any moment resumes without losing or repeating rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.taprun import catalog_selecting, tap_config, upsert

pytestmark = pytest.mark.slow  # full tap runs against the sandbox, several per test

PATH = "financialtransaction/TransactionLines"
PAGE = 1000  # rows per page of the Sync API


def start_tap(tmp_path, config, catalog, state, out_name):
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    args = [sys.executable, "-m", "tap_exactonline", "--config", str(tmp_path / "config.json"),
            "--catalog", str(tmp_path / "catalog.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args += ["--state", str(tmp_path / "state.json")]
    out = open(tmp_path / out_name, "w")  # noqa: SIM115
    return subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL, cwd=tmp_path), tmp_path / out_name


def read_messages(path):
    records, state = [], None
    for line in path.read_text().splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # the kill can cut the last line in half
        if msg["type"] == "RECORD":
            records.append(msg["record"])
        elif msg["type"] == "STATE":
            state = msg["value"]
    return records, state


@pytest.mark.parametrize("kill_after_records", [1500, 4200])
def test_kill_9_then_rerun_gives_every_row_exactly_once(sandbox_factory, tmp_path, kill_after_records):
    sandbox = sandbox_factory(volumes={"transaction_lines": 6000}, latency_ms=40)
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    catalog = catalog_selecting(config, {"transaction_lines"})
    # The page after the one that holds record number kill_after_records hangs (6 pages of 1,000):
    # however late the loop below sees the count (a loaded machine), the kill comes before the tap
    # has read everything, mid-page or between pages. The rerun runs without it.
    sandbox.faults({"kind": "timeout", "ms": 120_000, "path": "sync/Financial/TransactionLines",
                    "after": kill_after_records // PAGE + 1})

    proc, out = start_tap(tmp_path, config, catalog, None, "run1.singer")
    deadline = time.time() + 60
    while time.time() < deadline:
        if out.read_text().count('"type":"RECORD"') + out.read_text().count('"type": "RECORD"') >= kill_after_records:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sandbox.faults()  # no more hangs for the rerun (the kill may have come before the hung page)
    first, state = read_messages(out)
    assert 0 < len(first) <= (kill_after_records // PAGE + 1) * PAGE < 6000, len(first)  # the hang held

    # A target commits only the records before the last STATE it saw.
    proc, out2 = start_tap(tmp_path, config, catalog, state, "run2.singer")
    assert proc.wait(timeout=120) == 0
    second, _ = read_messages(out2)

    source = {(r["ID"], division) for r in sandbox.records(division, PATH)}
    table = upsert(first + second, ("ID", "Division"))
    assert set(table) == source
    # the rerun starts right after the saved bookmark: no row before it is read again
    bookmark = max(int(p["replication_key_value"]) for p in state["bookmarks"]["transaction_lines"]["partitions"]
                   if "replication_key_value" in p) if state else 0
    assert all(int(r["Timestamp"]) > bookmark for r in second)
