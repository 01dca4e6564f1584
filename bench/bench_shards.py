"""Benchmark: the main job for D divisions in one process vs in shards under Dagster.

    .venv/bin/python bench/bench_shards.py --divisions 101,103,104 --shards 3

Same sandbox data, same selection (``--streams``, default: what the former scaling-out e2e test
loads), same PostgreSQL, each into a fresh database: first ``meltano run
tap-exactonline target-postgres`` (the main job's extract and load) once for all divisions, then ``dagster job execute`` of
``orchestrate.definitions`` with N shards at once (schema step included). Prints both
wall times and the rows that landed. Not a test: figures go in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from exact_sandbox.process import SandboxProcess
from scripts import bootstrap

ROOT = bootstrap.ROOT
DSN = os.environ.get("E2E_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def rows(database: str) -> int:
    with psycopg.connect(DSN.rsplit("/", 1)[0] + f"/{database}") as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'exactonline'")]
        return sum(conn.execute(f'SELECT count(*) FROM exactonline."{t}"').fetchone()[0] for t in tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divisions", default="101,103,104")
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--streams", default="accounts,gl_accounts,transaction_lines,deleted")
    parser.add_argument("--volume", action="append", default=[], help="sandbox volume, e.g. transaction_lines=5000")
    parser.add_argument("--knob", action="append", default=[], help="sandbox knob, e.g. latency_ms=500")
    args = parser.parse_args()
    bootstrap.bootstrap(dev=False, orchestrate=True)
    sandbox_args = ["--divisions", args.divisions, "--knob", "minutely_limit=1000000000"]
    for volume in args.volume:
        sandbox_args += ["--volume", volume]
    for knob in args.knob:
        sandbox_args += ["--knob", knob]
    databases = {name: f"bench_shards_{name}_{uuid.uuid4().hex[:6]}" for name in ("one", "sharded")}
    with psycopg.connect(DSN, autocommit=True) as conn:
        for database in databases.values():
            conn.execute(f'CREATE DATABASE "{database}"')
    host = DSN.split("@", 1)[1].rsplit("/", 1)[0]
    figures = {}
    try:
        with SandboxProcess(sys.executable, sandbox_args) as sandbox, tempfile.TemporaryDirectory() as tmp:
            for name, database in databases.items():
                # Only its own settings: in the shell that followed the README, EXACT_SHARD_CONCURRENCY,
                # MELTANO_ENVIRONMENT or a TAP_EXACTONLINE_BASE_URL would otherwise win (the last sends
                # this sandbox's refresh token to another Exact: "not the newest one").
                env = bootstrap.own_meltano_env({
                    "MELTANO_ENVIRONMENT": "demo",
                    "MELTANO_DATABASE_URI": f"sqlite:///{tmp}/{name}.db",
                    "MELTANO_BIN": str(bootstrap.meltano_bin()),
                    "EXACT_SANDBOX_URL": sandbox.url,
                    "EXACT_SANDBOX_REFRESH_TOKEN": sandbox.mint_refresh_token(),
                    "DEMO_WAREHOUSE_URL": f"postgresql+psycopg://postgres@{host}/{database}",
                    "TAP_EXACTONLINE_TOKEN_STORE": f"postgresql://postgres@{host}/{database}",
                    "TAP_EXACTONLINE__SELECT": json.dumps([f"{s}.*" for s in args.streams.split(",")]),
                    "DAGSTER_HOME": str(Path(tmp) / f"dagster-{name}"),
                    "EXACT_SHARDS": str(args.shards),
                    "EXACT_SHARD_CONCURRENCY": str(args.shards),  # all shards at once, as the README says
                    "EXACT_SHARD_RETRIES": "0",  # a failure ends the bench; a retry would skew its time
                })
                Path(env["DAGSTER_HOME"]).mkdir()
                if name == "one":
                    # The job's extract and load, as each shard runs them (its dbt task is not sharded).
                    cmd = [str(bootstrap.meltano_bin()), "run", "--state-id-suffix", "bench",
                           "tap-exactonline", "target-postgres"]
                else:
                    cmd = [str(bootstrap.orchestrate_bin()), "job", "execute", "-d", str(ROOT),
                           "-m", "orchestrate.definitions", "-j", "exact_to_warehouse_shards"]
                started = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                figures[name] = (time.perf_counter() - started, rows(database))
                if proc.returncode:
                    sys.exit(f"{' '.join(cmd[:3])} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            for database in databases.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(f"divisions {args.divisions}, streams {args.streams}, volumes {args.volume or 'default'}, "
          f"knobs {args.knob or 'none'} (load average {os.getloadavg()[0]:.1f})")
    print(f"one process (meltano run):         {figures['one'][0]:6.1f} s wall, {figures['one'][1]:,} rows")
    print(f"{args.shards} shards (dagster job execute): {figures['sharded'][0]:6.1f} s wall, "
          f"{figures['sharded'][1]:,} rows (schema step and Dagster's start included)")


if __name__ == "__main__":
    main()
