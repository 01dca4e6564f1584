"""Scaling out under Dagster (README, "Scaling out"), checked on the README's own `dagster job execute`.

tests/e2e/test_readme.py runs the README's Dagster block against the sandbox below: three divisions
in three shards, access tokens that expire every few seconds, answers that come late and one
division's transaction lines refused once. The README's shards then share its PostgreSQL token
store (what it says to use for shards) while the tokens expire, and the faulty shard fails and is
retried. What has to hold afterwards is `assert_shards_run`. (It replaced test_scaling_out.py,
whose own Dagster run repeated the README's at the CPU cost of a run with a few streams.)
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Iterator

from exact_sandbox.process import SandboxProcess
from scripts import bootstrap
from tap_exactonline.shards import shard_of
from tests.e2e.conftest import sandbox_running
from tests.e2e.test_main_job import assert_warehouse_equals_sandbox, selected_streams

DIVISIONS = (101, 103, 104)  # shards of 3: {101}, {104}, {103}
SHARDS = 3
FAULTY = 104
TOKEN_LIFETIME = 3  # seconds: every shard outlives at least one access token (SYNC_LATENCY_MS)
# Each shard makes dozens of sync calls one after another (35 streams; asserted below): answered
# this late, they alone outlast a token. (At 1 s each, the job took minutes.)
SYNC_LATENCY_MS = 300

# Logs each DDL command on the warehouse schema with the application_name of its session
# (the orchestrator names each step's sessions through PGAPPNAME).
DDL_LOG = """
CREATE TABLE public.ddl_log (app text, command text, object text);
CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    IF r.schema_name = 'exactonline' OR r.object_identity = 'exactonline' THEN
      INSERT INTO public.ddl_log VALUES (current_setting('application_name'), r.command_tag, r.object_identity);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION public.log_ddl();
"""


@contextlib.contextmanager
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    """Three divisions, one per shard, and access tokens of TOKEN_LIFETIME seconds from the start
    (the README's login comes first, and its token must not outlive the shards)."""
    assert sorted({shard_of(d, SHARDS) for d in DIVISIONS}) == [1, 2, 3]
    knobs = {
        "access_token_lifetime": TOKEN_LIFETIME,
        # Exact's "too early" rule scaled to the short lifetime (570 of 600 s; whole seconds: 2 of 3).
        "refresh_too_early_seconds": int(TOKEN_LIFETIME * 0.9),
        # The faulty shard's retry starts at once (the README test sets EXACT_SHARD_RETRY_DELAY=0, not
        # the default 5 minutes) and would wait out the minute window its first attempt used (seen:
        # 90 s). The minute limit has tests of its own (test_limits.py, test_faults_e2e.py).
        "minutely_limit": 1000,
    }
    with sandbox_running(tmp_path, divisions=DIVISIONS, knobs=knobs) as process:
        yield process


def make_hostile(exact: SandboxProcess) -> None:
    """Before the shards run: the faulty division's transaction lines refused once, and every sync
    call answered late, so that each shard outlives its first access token however fast the machine."""
    exact.admin("POST", "faults", {"kind": "error", "path": "sync/Financial/TransactionLines",
                                   "division": FAULTY, "count": 1, "status": 400})
    exact.admin("POST", "faults", {"kind": "latency", "path": "sync/", "ms": SYNC_LATENCY_MS})


def dagster_run(dagster_home: Path) -> dict:
    """The last run of the Dagster instance in ``dagster_home``: its status and event log."""
    got = subprocess.run([str(bootstrap.orchestrate_bin("python")), str(Path(__file__).with_name("dagster_events.py"))],
                         env={"DAGSTER_HOME": str(dagster_home), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    return json.loads(got.stdout)


def assert_shards_run(exact: SandboxProcess, warehouse, run: dict) -> None:
    assert run["status"] == "SUCCESS", run["status"]
    events = run["events"]

    def of(kind: str, step: str) -> list[dict]:
        return [e for e in events if e["type"] == kind and e["step"] == step]

    # Every shard succeeded with its run summary as metadata; the faulty division's shard failed
    # once, naming its division, and succeeded on its retry.
    faulty = f"shard_{shard_of(FAULTY, SHARDS)}_of_{SHARDS}"
    for k in range(1, SHARDS + 1):
        step = f"shard_{k}_of_{SHARDS}"
        assert len(of("STEP_SUCCESS", step)) == 1, step
        (output,) = of("STEP_OUTPUT", step)
        assert output["metadata"]["calls"] > 0 and output["metadata"]["records"] > 0, output
        assert len(of("STEP_UP_FOR_RETRY", step)) == (1 if step == faulty else 0), step
    (retry,) = of("STEP_UP_FOR_RETRY", faulty)
    assert f"(divisions [{FAULTY}]) failed" in (retry["error"] or "") + (retry["message"] or ""), retry

    # Observability: every division's run summary (calls, budget left, records) is in the metadata
    # of its shard's output and in Dagster's log.
    summaries = {s["division"]: s for e in events if e["type"] == "STEP_OUTPUT" and e["step"] != "prepare_tables"
                 for s in e["metadata"]["run summary per division"] if s.get("records")}
    assert set(summaries) == set(DIVISIONS), summaries
    for summary in summaries.values():
        assert summary["calls"] > 0 and 0 < summary["daily_remaining"] < 5000, summary
        assert summary["records"].get("transaction_lines", 0) > 0, summary
    logged = [e["message"] for e in events if e["type"] == "LOG" and "run summary" in (e["message"] or "")]
    assert len(logged) >= len(DIVISIONS), logged

    # The token chain: access tokens expired during the run and were refreshed (each shard spent
    # longer than a token lives on late sync answers alone), and no token call failed.
    log = exact.log()
    for division in DIVISIONS:
        late = [e for e in log if e.get("division") == division and str(e["path"]).startswith("sync/")]
        assert len(late) * SYNC_LATENCY_MS > TOKEN_LIFETIME * 1000, (division, len(late))
    token_calls = [e for e in log if "oauth2/token" in e["path"]]
    assert [e["status"] for e in token_calls if e["status"] != 200] == [], token_calls
    assert len(token_calls) >= 2, "no access token expired during the run"

    # Every table of the main job's selection equals the sandbox, every row once.
    streams = selected_streams()
    assert warehouse.tables() == set(streams)
    assert_warehouse_equals_sandbox(exact, warehouse, streams)

    # Every CREATE and ALTER on the warehouse's tables came from the schema step: the shards'
    # loaders found nothing to create or alter, so they had nothing to race on.
    ddl = warehouse.query("SELECT app, command, object FROM public.ddl_log")
    assert {app for app, _, _ in ddl} == {"exactonline-tables"}, ddl
    assert {obj.split(".")[-1].strip('"') for _, cmd, obj in ddl if cmd == "CREATE TABLE"} == warehouse.tables()
