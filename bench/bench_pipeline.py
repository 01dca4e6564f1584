"""Benchmark: tap-exactonline | target-postgres into the local PostgreSQL, in one run.

    .venv/bin/python bench/bench_pipeline.py --rows 100000
    .venv/bin/python bench/bench_pipeline.py --rows 20000 --variant validate_records=false \\
        --variant use_copy=true,validate_records=false,batch_size_rows=50000

Loads N transaction lines (all 71 fields) of one sandbox division and prints, in
one table, rows per second for:

* the tap alone (its output to a file),
* tap | target-postgres with the loader's own defaults,
* tap | target-postgres with the settings ``meltano.yml`` gives the main job
  (the plugin's setting defaults and its ``config`` block, as Meltano passes them),
* each ``--variant`` (the loader's defaults plus the given settings).

The loader is the plugin Meltano installed (``.meltano/loaders/target-postgres``),
run directly on a real pipe from the tap, once per row of the table, each into a
fresh schema of one throwaway database (dropped at the end). Every pipeline's
table is checked to hold exactly N rows. Not a test: figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import yaml

from exact_sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[1]
STREAM = "transaction_lines"
TARGET = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
# Where the warehouse is, not how it loads: left out of "the meltano.yml settings".
CONNECTION = {"host", "port", "user", "password", "database", "sqlalchemy_url", "default_target_schema",
              "ssl_enable", "ssl_mode", "ssl_certificate_authority"}


def meltano_yml_settings() -> dict:
    """target-postgres settings as Meltano passes them to the main job (defaults + plugin config)."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    plugin = next(p for p in project["plugins"]["loaders"] if p["name"] == "target-postgres")
    settings = {s["name"]: s["value"] for s in plugin.get("settings", []) if "value" in s}
    settings.update(plugin.get("config") or {})
    return {k: v for k, v in settings.items() if k not in CONNECTION}


def parse_variant(text: str) -> dict:
    out = {}
    for part in text.split(","):
        key, _, raw = part.partition("=")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def tap_files(sandbox: SandboxProcess, tmp: Path) -> list[str]:
    """Config and catalog (transaction lines only) of a tap run; returns its command line."""
    config = {
        "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.mint_refresh_token(), "token_store": str(tmp / "tokens.json"),
        "base_url": sandbox.url, "divisions": [101], "route_deletes": False,
    }
    (tmp / "tap.json").write_text(json.dumps(config))
    tap = [sys.executable, "-m", "tap_exactonline", "--config", str(tmp / "tap.json")]
    catalog = json.loads(subprocess.run([*tap, "--discover"], capture_output=True, check=True, cwd=tmp).stdout)
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if not md["breadcrumb"]:
                md["metadata"]["selected"] = entry["tap_stream_id"] == STREAM
    (tmp / "catalog.json").write_text(json.dumps(catalog))
    return [*tap, "--catalog", str(tmp / "catalog.json")]


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pipeline(tap: list[str], target_config: dict | None, tmp: Path) -> tuple[float, float]:
    """Wall seconds of tap | target (tap alone into a file when no target), and the target's CPU seconds."""
    env = {**os.environ, "LOGLEVEL": "WARNING"}
    started = time.perf_counter()
    if target_config is None:
        with open(tmp / "out.singer", "wb") as out:
            subprocess.run(tap, stdout=out, stderr=subprocess.DEVNULL, check=True, cwd=tmp, env=env)
        return time.perf_counter() - started, 0.0
    (tmp / "target.json").write_text(json.dumps(target_config))
    producer = subprocess.Popen(tap, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp, env=env)
    cpu_before = cpu_of_children()
    with open(tmp / "target.log", "wb") as log:
        loader = subprocess.run([str(TARGET), "--config", str(tmp / "target.json")], stdin=producer.stdout,
                                stdout=subprocess.DEVNULL, stderr=log, cwd=tmp, env=env)
    # RUSAGE_CHILDREN grows when a child is reaped: the target is, the tap not yet.
    loader_cpu = cpu_of_children() - cpu_before
    producer.stdout.close()
    producer.wait()
    elapsed = time.perf_counter() - started
    if loader.returncode or producer.returncode:
        sys.exit(f"pipeline failed (tap {producer.returncode}, target {loader.returncode}):\n"
                 + (tmp / "target.log").read_text()[-3000:])
    return elapsed, loader_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dsn", default=os.environ.get("E2E_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--variant", action="append", default=[], help="extra loader settings, k=v[,k=v...]")
    args = parser.parse_args()
    if not TARGET.exists():
        sys.exit(f"{TARGET} is missing: run python3 scripts/bootstrap.py first")

    database = f"bench_pipeline_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    info = psycopg.conninfo.conninfo_to_dict(args.dsn)
    host = f"{info.get('host') or '127.0.0.1'}:{info.get('port') or 5432}"
    login = info.get("user") or "postgres"
    if info.get("password"):
        login += ":" + str(info["password"])
    connection = {"sqlalchemy_url": f"postgresql+psycopg://{login}@{host}/{database}"}
    loader_rows = [("target-postgres, its defaults", {}), ("target-postgres, meltano.yml", meltano_yml_settings())]
    loader_rows += [(f"target-postgres, defaults + {v}", parse_variant(v)) for v in args.variant]

    sandbox_args = ["--divisions", "101", "--volume", f"{STREAM}={args.rows}", "--eager",
                    "--knob", "minutely_limit=1000000000", "--knob", "daily_limit=1000000000"]
    results: list[tuple[str, float, float, int]] = []
    try:
        with SandboxProcess(sys.executable, sandbox_args) as sandbox, tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            tap = tap_files(sandbox, tmp)
            wall, _ = run_pipeline(tap, None, tmp)
            with open(tmp / "out.singer", "rb") as out:
                emitted = sum(1 for line in out if b'"RECORD"' in line[:30])
            results.append(("tap alone (to a file)", wall, 0.0, emitted))
            for index, (title, settings) in enumerate(loader_rows):
                schema = f"run_{index}"
                config = {**connection, **settings, "default_target_schema": schema}
                wall, cpu = run_pipeline(tap, config, tmp)
                with psycopg.connect(args.dsn.rsplit("/", 1)[0] + f"/{database}") as conn:
                    loaded = conn.execute(f'SELECT count(*) FROM "{schema}"."{STREAM}"').fetchone()[0]
                results.append((title, wall, cpu, loaded))
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    print(f"{args.rows:,} transaction lines (71 fields), one division, into PostgreSQL at {host}")
    print(f"meltano.yml loader settings: {json.dumps(meltano_yml_settings(), sort_keys=True)}")
    print("| pipeline | rows | wall s | rows/s | loader CPU s | rows per loader CPU-second |\n|---|---|---|---|---|---|")
    for title, wall, cpu, rows in results:
        flag = "" if rows == args.rows else f" (expected {args.rows})"
        per_cpu = f"{rows / cpu:,.0f}" if cpu else "-"
        print(f"| {title} | {rows:,}{flag} | {wall:.1f} | {rows / wall:,.0f} | {cpu:.1f} | {per_cpu} |")
    default, tuned = results[1], results[2]
    print(f"meltano.yml vs defaults: {default[1] / tuned[1]:.1f}x rows/s, "
          f"{default[2] / tuned[2]:.1f}x rows per loader CPU-second (load average now: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
