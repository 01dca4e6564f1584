"""Benchmark: what the dbt transform (transform/) costs on top of the load.

    .venv/bin/python bench/bench_transform.py                        # the sandbox's default volumes
    .venv/bin/python bench/bench_transform.py --lines 100000          # 100,000 transaction lines

Loads the sandbox (two divisions) into a throwaway database with `meltano run tap-exactonline
target-postgres` (not timed), then times `meltano run dbt-postgres:run` (what the main job adds)
and `meltano run dbt-postgres:run dbt-postgres:test` twice: with a fresh dbt target directory (dbt parses the project in full, as in CI where every test
has its own database) and again (dbt's partial parse, as in production runs). Prints wall time
and CPU seconds (of meltano, dbt and their children; the database's work is not in it).
Not a test: figures go in docs/benchmarks.md. Needs PostgreSQL (E2E_PG_DSN, default 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

from exact_sandbox.process import SandboxProcess
from scripts import bootstrap
from scripts.statements import connection_env

DSN = os.environ.get("E2E_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def meltano(env: dict, *args: str) -> tuple[float, float]:
    """Run meltano; (wall seconds, CPU seconds)."""
    wall, cpu = time.monotonic(), _cpu()
    proc = subprocess.run([str(bootstrap.meltano_bin()), "--environment=demo", "run", *args], cwd=bootstrap.ROOT,
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"meltano run {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.monotonic() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=0, help="transaction lines per division (0: the default)")
    args = parser.parse_args()
    bootstrap.bootstrap()

    database = f"bench_transform_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    parts = psycopg.conninfo.conninfo_to_dict(DSN)
    url = (f"postgresql+psycopg://{parts.get('user') or 'postgres'}@{parts.get('host') or '127.0.0.1'}:"
           f"{parts.get('port') or 5432}/{database}")
    sandbox_args = ["--divisions", "101,102", "--knob", "minutely_limit=1000000", "--knob", "daily_limit=1000000"]
    if args.lines:
        sandbox_args += ["--volume", f"transaction_lines={args.lines}"]
    try:
        with SandboxProcess(sys.executable, sandbox_args) as sandbox, tempfile.TemporaryDirectory() as tmp:
            # Only its own settings: the README's exports for prod (or a test's) would beat them.
            env = bootstrap.own_meltano_env({
                "MELTANO_ENVIRONMENT": "demo", "EXACT_SANDBOX_URL": sandbox.url,
                "EXACT_SANDBOX_REFRESH_TOKEN": sandbox.mint_refresh_token(), "DEMO_WAREHOUSE_URL": url,
                "TAP_EXACTONLINE_TOKEN_STORE": f"{tmp}/tokens.json",
                "MELTANO_DATABASE_URI": f"sqlite:///{tmp}/meltano.db",
                "DBT_TARGET_PATH": f"{tmp}/dbt-target", "DBT_LOG_PATH": f"{tmp}/dbt-logs",
                **connection_env(url),
            })
            load = meltano(env, "tap-exactonline", "target-postgres")
            run_only = meltano({**env, "DBT_TARGET_PATH": f"{tmp}/dbt-target-run"}, "dbt-postgres:run")
            first = meltano(env, "dbt-postgres:run", "dbt-postgres:test")
            again = meltano(env, "dbt-postgres:run", "dbt-postgres:test")
        with psycopg.connect(DSN.rsplit("/", 1)[0] + f"/{database}") as conn:
            lines = conn.execute("select count(*) from exactonline_analytics_marts.fct_general_ledger").fetchone()[0]
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    print(f"general ledger lines (2 divisions): {lines:,}")
    print(f"load (tap-exactonline target-postgres):        {load[0]:6.1f} s wall, {load[1]:6.1f} s CPU")
    print(f"dbt run alone, full parse (the main job's T):  {run_only[0]:6.1f} s wall, {run_only[1]:6.1f} s CPU")
    print(f"dbt run + test, full parse (fresh target dir): {first[0]:6.1f} s wall, {first[1]:6.1f} s CPU")
    print(f"dbt run + test, partial parse (second run):    {again[0]:6.1f} s wall, {again[1]:6.1f} s CPU")


if __name__ == "__main__":
    main()
