"""Benchmark: N divisions x R transaction lines with a given sandbox latency, read in parallel.

    .venv/bin/python bench/bench_divisions.py --divisions 12 --rows 4000 --latency 0.25
    .venv/bin/python bench/bench_divisions.py --serial-too   # the same, then with parallel_divisions=1

Runs the tap at its default settings (plus any ``--parallel``) against a sandbox
that answers every request after ``--latency`` seconds, and prints the tap's wall
time, the sum of the request times the sandbox logged (what the same requests
cost one after another) and their ratio. Not a test: figures go in notes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bench.taprun import run_tap_on
from exact_sandbox.process import SandboxProcess

STREAM = "transaction_lines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divisions", type=int, default=12)
    parser.add_argument("--rows", type=int, default=4000, help="transaction lines per division")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the sandbox waits per request")
    parser.add_argument("--parallel", type=int, help="parallel_divisions (default: the tap's default)")

    parser.add_argument("--serial-too", action="store_true",
                        help="also run with parallel_divisions=1 and print its wall time")
    args = parser.parse_args()

    divisions = list(range(101, 101 + args.divisions))
    sandbox_args = ["--divisions", ",".join(map(str, divisions)), "--volume", f"{STREAM}={args.rows}", "--eager",
                    "--knob", "minutely_limit=1000000000", "--knob", "daily_limit=1000000000"]
    print(f"divisions x rows:           {args.divisions} x {args.rows:,} (latency {args.latency:.2f} s a request)")
    with SandboxProcess(sys.executable, sandbox_args) as sandbox:
        runs = [args.parallel, 1] if args.serial_too else [args.parallel]
        for parallel in runs:
            with tempfile.TemporaryDirectory() as tmp:
                measure(sandbox, tmp, divisions, parallel, args.latency)


def measure(sandbox: SandboxProcess, tmp: str, divisions: list[int], parallel: int | None, latency: float) -> None:
    config: dict = {
        "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.mint_refresh_token(), "token_store": f"{tmp}/tokens.json",
        "base_url": sandbox.url, "divisions": divisions,
    }
    if parallel is not None:
        config["parallel_divisions"] = parallel

    def slow_and_clean() -> None:
        sandbox.admin("POST", "knobs", {"latency_ms": int(latency * 1000)})
        sandbox.reset_log()

    run = run_tap_on(tmp, config, STREAM, before_run=slow_and_clean)
    log = sandbox.log()
    sandbox.admin("POST", "knobs", {"latency_ms": 0})  # the next discovery and token mint go fast
    serial = sum(entry["ms"] for entry in log) / 1000
    print(f"parallel_divisions:         {parallel if parallel is not None else 'default'}")
    print(f"  records emitted:          {run.records:,}")
    print(f"  requests (API and OAuth): {len(log)}")
    print(f"  tap wall time:            {run.wall:.2f} s (process start to exit)")
    print(f"  tap CPU time:             {run.cpu:.2f} s (user + system; wall minus this is mostly waiting)")
    print(f"  load average (1 min):     {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  sum of request times:     {serial:.2f} s (the same requests one after another)")
    print(f"  ratio wall / serial:      {run.wall / serial:.2f}")


if __name__ == "__main__":
    main()
