"""Faults and limits: after the needed reruns the upserted output equals Exact, within budget."""

from __future__ import annotations

from collections import Counter

import pytest

from exactonline_api import http
from exactonline_api.errors import DailyBudgetExhausted
from tests.fakes import SandboxTime, client_time_from
from tests.taprun import run_tap, tap_config, upsert

pytestmark = pytest.mark.slow  # full tap runs against the sandbox, several per test

TL = "financialtransaction/TransactionLines"
STREAMS = {"transaction_lines": TL, "journals": "financial/Journals", "receivables": "cashflow/Receivables"}


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(http, "BACKOFF_BASE_SECONDS", 0.01)
    monkeypatch.setattr(http, "BACKOFF_CAP_SECONDS", 0.05)


def sync_until_complete(sandbox, config, streams, *, max_runs=8, between=None):
    """Run like a scheduler: rerun from the last state until a run ends cleanly."""
    state, outputs = None, []
    for _ in range(max_runs):
        out = run_tap(config, streams=set(streams), state=state, allow_error=True)
        outputs.append(out)
        state = out.state or state
        if out.error is None:
            return outputs
        if between:
            between()
    raise AssertionError(f"still failing after {max_runs} runs: {outputs[-1].error}")


def assert_matches_source(sandbox, outputs, streams, divisions):
    for stream, path in streams.items():
        rows = [r for out in outputs for r in out.records.get(stream, [])]
        key = ("ID", "Division")
        table = upsert(rows, key)
        source = {(r["ID"], d) for d in divisions for r in sandbox.records(d, path)}
        assert set(table) == source, stream


def calls(sandbox, status=None):
    return [c for c in sandbox.requests() if not c["path"].startswith("oauth2")
            and (status is None or c["status"] == status)]


@pytest.fixture
def busy(sandbox_factory):
    return sandbox_factory(volumes={"transaction_lines": 2500, "financial/Journals": 200,
                                    "cashflow/Receivables": 1200}, divisions="101,102",
                           minutely_limit=1000)


def test_no_429_in_normal_operation_thanks_to_the_throttle(sandbox_factory, tmp_path, monkeypatch):
    sandbox = sandbox_factory(volumes={"financial/Journals": 1500}, divisions="101", minutely_limit=12)
    time = SandboxTime(sandbox)  # a whole minute: the throttle's waits end exactly on window bounds
    client_time_from(monkeypatch, time)
    config = tap_config(sandbox, tmp_path, max_rate_limit_wait=90)
    out = run_tap(config, streams={"journals"})
    assert len(out.records["journals"]) == 1500
    # current/Me (no division: outside the rate limits), then the division list, then 25 pages of 60
    assert [c["path"] for c in calls(sandbox) if c["division"] is None] == ["current/Me"]
    used = [c for c in calls(sandbox) if c["division"] is not None]
    assert len(used) == 26 and calls(sandbox, 429) == []
    # 11 calls a minute (the 12th is kept as the floor), then a wait for the next window.
    per_minute = Counter(int(c["ts"] // 60) for c in used)
    assert [per_minute[m] for m in sorted(per_minute)] == [11, 11, 4]
    assert time.sleeps == [pytest.approx(60.05), pytest.approx(60.0)]  # to each reset, +0.05 s


def test_429_storm_without_headers(busy, tmp_path):
    busy.faults({"kind": "error", "status": 429, "path": "*", "probability": 0.3})
    config = tap_config(busy, tmp_path, max_rate_limit_wait=0)
    outputs = sync_until_complete(busy, config, STREAMS)
    assert calls(busy, 429), "the storm never hit"
    assert_matches_source(busy, outputs, STREAMS, busy.divisions)


def test_429_with_minutely_headers_waits_for_the_reset(sandbox_factory, tmp_path, sandbox_client, monkeypatch):
    sandbox = sandbox_factory(divisions="101", minutely_limit=5)
    time = SandboxTime(sandbox, at=1_800_000_000 + 20)
    client_time_from(monkeypatch, time)
    client = sandbox_client(sandbox)
    for _ in range(5):  # another app of the same client spends this window
        client.get(101, "financial/Journals", {"$select": "ID"})
    sandbox.reset_log()
    config = tap_config(sandbox, tmp_path, max_rate_limit_wait=90)
    out = run_tap(config, streams={"journals", "gl_accounts"})
    assert out.records["journals"] and out.records["gl_accounts"]
    # One 429, then a wait of exactly the rest of the minute the 429 names (plus the margin).
    assert len(calls(sandbox, 429)) == 1 and time.sleeps[0] == pytest.approx(40.05)


@pytest.mark.parametrize("fault", [
    {"kind": "error", "status": 503, "path": "*", "probability": 0.2},
    {"kind": "drop", "path": "*", "probability": 0.15},
    {"kind": "malformed", "path": "sync/Financial/TransactionLines", "after": 1, "count": 2},
    {"kind": "html", "path": "bulk/", "count": 2},
])
def test_transient_faults_are_retried(busy, tmp_path, fault):
    busy.faults(fault)
    config = tap_config(busy, tmp_path)
    outputs = sync_until_complete(busy, config, STREAMS)
    assert_matches_source(busy, outputs, STREAMS, busy.divisions)


def test_slow_responses_time_out_and_are_retried(busy, tmp_path, caplog):
    # A 3 s timeout against 6 s hangs: wide enough margins that an ordinary page on a loaded machine
    # (divisions are read in parallel) never times out six times in a row.
    busy.faults({"kind": "timeout", "ms": 6000, "path": "sync/Financial/TransactionLines", "count": 2})
    config = tap_config(busy, tmp_path, request_timeout=3)
    outputs = sync_until_complete(busy, config, STREAMS)
    assert len(outputs) == 1
    assert_matches_source(busy, outputs, STREAMS, busy.divisions)
    # Both hung pages were given up on after request_timeout, not waited out. (At least two: on a
    # loaded machine an ordinary page may take longer than the timeout too, and is retried.)
    timeouts = [r for r in caplog.records if "Timeout on GET sync/Financial/TransactionLines" in r.getMessage()]
    assert len(timeouts) >= 2


def test_daily_budget_stops_cleanly_and_the_next_day_resumes(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(volumes={"transaction_lines": 5500, "financial/Journals": 200},
                              divisions="101", daily_limit=7, minutely_limit=1000)
    config = tap_config(sandbox, tmp_path, daily_call_reserve=2)
    streams = {"transaction_lines": TL, "journals": "financial/Journals"}
    # 5 usable calls a day: the division-move check plus the 4 pages journals needs in one run
    # (an unsorted stream moves its bookmark only when it completes).
    day_calls: list[int] = []

    def charged() -> int:
        # the sandbox (like Exact) checks the bearer before it counts: a 401 is not charged
        # and current/Me (no division in the URL) is not counted at all
        return len([c for c in calls(sandbox) if c["status"] != 401 and c["division"] is not None])

    def next_day():
        day_calls.append(charged())
        sandbox.reset_log()
        sandbox.advance(86400)

    outputs = sync_until_complete(sandbox, config, streams, max_runs=6, between=next_day)
    day_calls.append(charged())
    assert isinstance(outputs[0].error, DailyBudgetExhausted)
    assert "division 101" in str(outputs[0].error)
    assert all(n <= 7 - 2 for n in day_calls), day_calls  # never ate the reserve
    assert calls(sandbox, 429) == []
    assert_matches_source(sandbox, outputs, streams, [101])


def test_budget_stop_exits_75_with_a_clear_message(sandbox_factory, tmp_path):
    import json
    import subprocess
    import sys

    sandbox = sandbox_factory(volumes={"transaction_lines": 3500}, divisions="101", daily_limit=3)
    config = tap_config(sandbox, tmp_path, daily_call_reserve=1)
    (tmp_path / "c.json").write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, "-m", "tap_exactonline", "--config", str(tmp_path / "c.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 75
    assert "daily budget stop" in proc.stderr.splitlines()[-1]
    assert '"type":"STATE"' in proc.stdout.replace(" ", "")


def test_blocked_endpoint_fails_that_stream_only(busy, tmp_path):
    busy.set(error_limit=0)
    busy.faults({"kind": "error", "status": 404, "path": "financial/Journals", "count": 1, "division": 101})
    config = tap_config(busy, tmp_path)
    out = run_tap(config, streams=set(STREAMS), allow_error=True)
    assert out.error is not None and "journals in division 101" in str(out.error)
    assert {r["Division"] for r in out.records["journals"]} == {102}
    assert len(out.records["transaction_lines"]) == 2500 * 2
