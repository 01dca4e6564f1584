"""Benchmark: sync N transaction lines from the sandbox through tap-exactonline.

    .venv/bin/python bench/bench_tap.py --rows 100000
    .venv/bin/python bench/bench_tap.py --rows 1000000
    .venv/bin/python bench/bench_tap.py --knob escape_slashes=false ...   # Exact's value shapes off, one by one

Prints records per second (the tap process end to end, start-up included,
and per second of the tap's own CPU time, i.e. on one core), API calls per
1,000 records counted from the sandbox's request log, and the tap's peak
memory (max RSS). Not a test: figures go in notes.

The sandbox runs in its own process and needs about as much CPU per record
as the tap; on a machine with fewer than three idle cores the end-to-end
figure measures the two sharing cores, so the CPU-time figure is the tap's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from bench.taprun import run_tap_on
from exact_sandbox.process import SandboxProcess

STREAM = "transaction_lines"
PATH = "sync/Financial/TransactionLines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="a sandbox knob (repeatable), e.g. pad_fixed_width=false")
    args = parser.parse_args()

    sandbox_args = ["--divisions", "101", "--volume", f"{STREAM}={args.rows}", "--eager",
                    "--knob", "minutely_limit=1000000000", "--knob", "daily_limit=1000000000",
                    *(arg for knob in args.knob for arg in ("--knob", knob))]
    with SandboxProcess(sys.executable, sandbox_args) as sandbox, tempfile.TemporaryDirectory() as tmp:
        config = {
            "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
            "refresh_token": sandbox.mint_refresh_token(), "token_store": f"{tmp}/tokens.json",
            "base_url": sandbox.url, "divisions": [101], "route_deletes": False,
        }
        run = run_tap_on(tmp, config, STREAM, before_run=sandbox.reset_log)
        records, elapsed, cpu, peak_mb = run.records, run.wall, run.cpu, run.peak_mb
        calls = [r for r in sandbox.log() if r["path"] == PATH]

    print(f"rows in sandbox:            {args.rows}")
    print(f"records emitted:            {records}")
    print(f"tap wall time:              {elapsed:.2f} s (process start to exit)")
    print(f"records/s end to end:       {records / elapsed:,.0f}")
    print(f"tap CPU time:               {cpu:.2f} s (user + system, start-up included)")
    print(f"records/s per tap CPU-second: {records / cpu:,.0f}")
    print(f"API calls ({PATH}): {len(calls)} = {len(calls) / max(records, 1) * 1000:.2f} per 1,000 records "
          f"(ceil(rows/1000) = {-(-args.rows // 1000)})")
    print(f"peak memory (max RSS):      {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
