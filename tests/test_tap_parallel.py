"""Several divisions read at once: every row once, exact bookmarks, STATE never ahead, failures kept apart."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from exactonline_api.errors import ConfigError
from tap_exactonline.tap import TapExactOnline
from tests.taprun import catalog_selecting, run_tap, tap_config, upsert
from tests.test_tap_resume import read_messages, start_tap

pytestmark = pytest.mark.slow  # full tap runs against the sandbox, several per test

PATH = "sync/Financial/TransactionLines"
DIVISIONS = "101,102,103"


def source_rows(sandbox, division: int) -> dict[str, int]:
    """ID -> Timestamp of the sandbox's rows of a division."""
    return {r["ID"]: int(r["Timestamp"]) for r in sandbox.records(division, "financialtransaction/TransactionLines")}


def assert_state_never_ahead(messages: list[dict], sources: dict[int, dict[str, int]]) -> int:
    """At every STATE, each division's bookmark covers only rows already emitted; returns the STATE count."""
    emitted: dict[int, set[str]] = {d: set() for d in sources}
    states = 0
    for msg in messages:
        if msg["type"] == "RECORD" and msg["stream"] == "transaction_lines":
            emitted[msg["record"]["Division"]].add(msg["record"]["ID"])
        elif msg["type"] == "STATE":
            states += 1
            for part in msg["value"]["bookmarks"].get("transaction_lines", {}).get("partitions", []):
                mark = part.get("replication_key_value")
                if mark is None:
                    continue
                division = part["context"]["Division"]
                covered = {i for i, ts in sources[division].items() if ts <= int(mark)}
                assert covered <= emitted[division], (division, mark, len(covered - emitted[division]))
    return states


def test_divisions_in_parallel_emit_every_row_once_with_exact_bookmarks(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(volumes={"transaction_lines": 2500}, divisions=DIVISIONS, latency_ms=20)
    config = tap_config(sandbox, tmp_path, parallel_divisions=3)
    sandbox.reset_log()
    out = run_tap(config, streams={"transaction_lines"})

    kinds = [m["type"] for m in out.messages if m.get("stream") == "transaction_lines"]
    assert kinds[0] == "SCHEMA" and kinds.count("SCHEMA") == 1
    sources = {d: source_rows(sandbox, d) for d in sandbox.divisions}
    for division, rows in sources.items():
        got = [r["ID"] for r in out.records["transaction_lines"] if r["Division"] == division]
        assert sorted(got) == sorted(rows), division  # every row, exactly once
    assert assert_state_never_ahead(out.messages, sources) > 3
    marks = {p["context"]["Division"]: int(p["replication_key_value"])
             for p in out.state["bookmarks"]["transaction_lines"]["partitions"]}
    assert marks == {d: max(rows.values()) for d, rows in sources.items()}
    # As many calls as one division after another: three 1,000-row pages per division.
    pages = [r for r in sandbox.requests() if r["path"] == PATH]
    assert sorted(r["division"] for r in pages) == sorted([101, 102, 103] * 3)


def test_a_division_stopped_for_its_budget_leaves_the_others_running(sandbox_factory, sandbox_client, tmp_path):
    sandbox = sandbox_factory(volumes={"transaction_lines": 2500}, divisions=DIVISIONS, daily_limit=10,
                              minutely_limit=1000)
    client = sandbox_client(sandbox)
    for _ in range(6):  # another app spent 6 of division 102's 10 daily calls
        assert client.get(102, "financial/Journals", {"$select": "ID"}).status_code == 200
    config = tap_config(sandbox, tmp_path, parallel_divisions=3, daily_call_reserve=1)
    out = run_tap(config, streams={"transaction_lines"}, allow_error=True)

    assert "division 102: transaction_lines" in str(out.error)
    sources = {d: source_rows(sandbox, d) for d in sandbox.divisions}
    by_division = {d: {r["ID"] for r in out.records["transaction_lines"] if r["Division"] == d} for d in sources}
    assert by_division[101] == set(sources[101]) and by_division[103] == set(sources[103])
    assert 0 < len(by_division[102]) < len(sources[102])
    assert_state_never_ahead(out.messages, sources)
    marks = {p["context"]["Division"]: p.get("replication_key_value")
             for p in out.state["bookmarks"]["transaction_lines"]["partitions"]}
    assert int(marks[102]) == max(sources[102][i] for i in by_division[102])


def test_kill_9_during_a_parallel_read_then_rerun_gives_every_row_exactly_once(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(volumes={"transaction_lines": 3000}, divisions=DIVISIONS, latency_ms=40)
    config = tap_config(sandbox, tmp_path, parallel_divisions=3)
    catalog = catalog_selecting(config, {"transaction_lines"})
    # One division's last page (3 of 1,000 rows each) hangs: however late the loop below sees 4,000
    # records (a loaded machine), the kill comes before the tap has read everything. The rerun runs
    # without it.
    hung = sandbox.divisions[-1]
    sandbox.faults({"kind": "timeout", "ms": 120_000, "path": "sync/Financial/TransactionLines",
                    "division": hung, "after": 2})

    proc, out = start_tap(tmp_path, config, catalog, None, "run1.singer")
    deadline = time.time() + 60
    while time.time() < deadline and out.read_text().count('"type":"RECORD"') < 4000:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sandbox.faults()  # no more hangs for the rerun (the kill may have come before the hung page)
    first, state = read_messages(out)
    assert 0 < len(first) <= 8000, len(first)  # the hang held
    sources = {d: source_rows(sandbox, d) for d in sandbox.divisions}
    lines = []
    for line in out.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass  # the kill can cut the last line in half
    assert_state_never_ahead(lines, sources)

    proc, out2 = start_tap(tmp_path, config, catalog, state, "run2.singer")
    assert proc.wait(timeout=120) == 0
    second, _ = read_messages(out2)
    table = upsert(first + second, ("ID", "Division"))
    assert set(table) == {(i, d) for d, rows in sources.items() for i in rows}
    marks = {p["context"]["Division"]: int(p["replication_key_value"])
             for p in (state or {}).get("bookmarks", {}).get("transaction_lines", {}).get("partitions", [])
             if "replication_key_value" in p}
    # The rerun reads each division from its own bookmark on: no row a STATE committed is read again.
    assert all(sources[r["Division"]][r["ID"]] > marks.get(r["Division"], 0) for r in second)


def test_divisions_stream_is_read_once_and_the_run_ends_with_json_summaries(sandbox, tmp_path, caplog):
    config = tap_config(sandbox, tmp_path)
    sandbox.reset_log()
    with caplog.at_level("INFO", logger="tap_exactonline"):
        out = run_tap(config, streams={"divisions", "journals"})

    codes = sorted(int(r["Code"]) for r in out.records["divisions"])
    assert codes == sorted(sandbox.divisions)  # each division once, not once per division read
    reads = [r for r in sandbox.requests() if r["path"] == "system/Divisions"]
    # one read for the stream, plus the tap's one read of the granted divisions (with their move dates)
    assert "Code,Description,DivisionMoveDate" in [r["query"].get("$select") for r in reads]
    assert len(reads) == 2
    summaries = [json.loads(r.getMessage().split("run summary: ", 1)[1]) for r in caplog.records
                 if r.getMessage().startswith("run summary: ")]
    api = [r for r in sandbox.requests() if not r["path"].startswith("oauth2")]
    assert {s["division"]: s["calls"] for s in summaries} == {
        d: sum(1 for r in api if r["division"] == d) for d in sandbox.divisions}
    journals = {d: sum(1 for r in out.records["journals"] if r["Division"] == d) for d in sandbox.divisions}
    assert {s["division"]: s["records"].get("journals", 0) for s in summaries} == journals
    assert any(r.getMessage().startswith("run summary table:") for r in caplog.records)
    ends = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: journals division")]
    assert len(ends) == len(sandbox.divisions) and all("(done)" in line for line in ends)


def test_parallel_divisions_out_of_range_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"^parallel_divisions: 17 is out of range; use 1 to 16$"):
        TapExactOnline(config={"client_id": "x", "client_secret": "y", "parallel_divisions": 17})
