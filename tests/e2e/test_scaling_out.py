"""Scaling out: Dagster runs the main job in 3 shards of divisions at once (README, "Scaling out").

One ``dagster job execute`` of ``orchestrate.definitions`` on this machine: the schema step,
then three ``meltano run`` shards concurrently into one real PostgreSQL, sharing the
PostgreSQL token store while the sandbox's access tokens expire every few seconds, with one
division's transaction lines refused once, so that its shard fails and is retried.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psycopg
import pytest

from exact_sandbox.process import SandboxProcess
from scripts import bootstrap
from tap_exactonline.shards import shard_of
from tests.e2e.conftest import ROOT, isolated_sys_dir
from tests.e2e.test_main_job import assert_warehouse_equals_sandbox

pytestmark = pytest.mark.e2e

DIVISIONS = (101, 103, 104)  # shards of 3: {101}, {104}, {103}
# The main job with a few of its streams (Meltano's `select` extra), to keep the test lean.
STREAMS = ["accounts", "gl_accounts", "transaction_lines", "deleted"]
SHARDS = 3
FAULTY = 104
TOKEN_LIFETIME = 3  # seconds: every shard outlives at least one access token (SYNC_LATENCY_MS)
SYNC_LATENCY_MS = 1000


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


@pytest.fixture(scope="session")
def dagster_bin(meltano_bin):
    bootstrap.bootstrap(tools=False, dev=False, plugins=False, orchestrate=True)
    return bootstrap.orchestrate_bin("dagster")


def test_three_shards_under_dagster_share_tokens_load_everything_and_retry(
        dagster_bin, meltano_bin, warehouse, tmp_path):
    assert sorted({shard_of(d, SHARDS) for d in DIVISIONS}) == [1, 2, 3]
    with psycopg.connect(warehouse.dsn, autocommit=True) as conn:
        conn.execute(DDL_LOG)
    sandbox = SandboxProcess(sys.executable, [
        "--divisions", ",".join(map(str, DIVISIONS)),
        "--knob", f"access_token_lifetime={TOKEN_LIFETIME}",
        # Exact's "too early" rule scaled to the short lifetime (570 of 600 s; whole seconds: 2 of 3).
        "--knob", f"refresh_too_early_seconds={int(TOKEN_LIFETIME * 0.9)}",
    ], log_path=tmp_path / "sandbox.log")
    sandbox.divisions = DIVISIONS
    with sandbox:
        sandbox.admin("POST", "faults", {"kind": "error", "path": "sync/Financial/TransactionLines",
                                         "division": FAULTY, "count": 1, "status": 400})
        # Each shard reads its streams one after another, at least four sync calls: answering each
        # after 1 s makes every shard outlive its first access token however fast the machine is.
        sandbox.admin("POST", "faults", {"kind": "latency", "path": "sync/", "ms": SYNC_LATENCY_MS})
        env = bootstrap.meltano_env({
            "MELTANO_ENVIRONMENT": "demo",
            "MELTANO_SYS_DIR_ROOT": str(isolated_sys_dir(tmp_path)),
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "MELTANO_BIN": str(meltano_bin),
            "EXACT_SANDBOX_URL": sandbox.url,
            "EXACT_SANDBOX_REFRESH_TOKEN": sandbox.mint_refresh_token(),
            "DEMO_WAREHOUSE_URL": warehouse.url,
            # No `divisions`: every shard splits the granted list.
            "TAP_EXACTONLINE_TOKEN_STORE": warehouse.url.replace("postgresql+psycopg://", "postgresql://"),
            "DAGSTER_HOME": str(tmp_path / "dagster"),
            "EXACT_SHARDS": str(SHARDS),
            "EXACT_SHARD_CONCURRENCY": str(SHARDS),
            "EXACT_SHARD_RETRIES": "1",
            "EXACT_SHARD_RETRY_DELAY": "0",
            "TAP_EXACTONLINE__SELECT": json.dumps([f"{stream}.*" for stream in STREAMS]),
        })
        (tmp_path / "dagster").mkdir()
        started = time.monotonic()
        proc = subprocess.run(
            [str(dagster_bin), "job", "execute", "-d", str(ROOT), "-m", "orchestrate.definitions",
             "-j", "exact_to_warehouse_shards"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, check=False)
        seconds = time.monotonic() - started
        (tmp_path / "dagster.log").write_text(proc.stdout)
        print(f"dagster job execute: {seconds:.1f} s wall")  # the README's figure (pytest -s)
        assert proc.returncode == 0, f"dagster run failed; log {tmp_path / 'dagster.log'}\n{proc.stdout[-6000:]}"
        got = subprocess.run([str(bootstrap.orchestrate_bin("python")), str(ROOT / "tests/e2e/dagster_events.py")],
                             env=env, capture_output=True, text=True, check=True)
        run = json.loads(got.stdout)
        assert run["status"] == "SUCCESS"
        events = run["events"]

        def of(kind: str, step: str) -> list[dict]:
            return [e for e in events if e["type"] == kind and e["step"] == step]

        # Every shard succeeded with its run summary as metadata; the faulty division's shard
        # failed once, naming its division, and succeeded on its retry.
        faulty = f"shard_{shard_of(FAULTY, SHARDS)}_of_{SHARDS}"
        for k in range(1, SHARDS + 1):
            step = f"shard_{k}_of_{SHARDS}"
            assert len(of("STEP_SUCCESS", step)) == 1, step
            (output,) = of("STEP_OUTPUT", step)
            assert output["metadata"]["calls"] > 0 and output["metadata"]["records"] > 0, output
            assert len(of("STEP_UP_FOR_RETRY", step)) == (1 if step == faulty else 0), step
        (retry,) = of("STEP_UP_FOR_RETRY", faulty)
        assert f"(divisions [{FAULTY}]) failed" in (retry["error"] or "") + (retry["message"] or ""), retry

        # Observability: every division's run summary (calls, budget left, records) is in the
        # metadata of its shard's output and in Dagster's log.
        summaries = {s["division"]: s for e in events if e["type"] == "STEP_OUTPUT" and e["step"] != "prepare_tables"
                     for s in e["metadata"]["run summary per division"] if s.get("records")}
        assert set(summaries) == set(DIVISIONS), summaries
        for division, summary in summaries.items():
            assert summary["calls"] > 0 and 0 < summary["daily_remaining"] < 5000, summary
            assert summary["records"].get("transaction_lines", 0) > 0, summary
        logged = [e["message"] for e in events if e["type"] == "LOG" and "run summary" in (e["message"] or "")]
        assert len(logged) >= len(DIVISIONS), logged

        # The token chain: access tokens expired during the run and were refreshed, and no
        # token call failed.
        token_calls = [e for e in sandbox.log() if "oauth2/token" in e["path"]]
        assert [e["status"] for e in token_calls if e["status"] != 200] == [], token_calls
        assert len(token_calls) >= 2, "no access token expired during the run"

        # Every table equals the sandbox, every row once (primary keys are unique).
        assert warehouse.tables() == set(STREAMS)
        assert_warehouse_equals_sandbox(sandbox, warehouse, STREAMS)

        # Every CREATE and ALTER on the warehouse's tables came from the schema step: the
        # shards' loaders found nothing to create or alter, so they had nothing to race on.
        ddl = warehouse.query("SELECT app, command, object FROM public.ddl_log")
        assert {app for app, _, _ in ddl} == {"exactonline-tables"}, ddl
        assert {obj.split(".")[-1].strip('"') for _, cmd, obj in ddl if cmd == "CREATE TABLE"} == warehouse.tables()
