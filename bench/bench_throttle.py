"""Benchmark: how close to Exact's 60 calls a minute the tap runs, and whether it ever gets a 429.

    .venv/bin/python bench/bench_throttle.py --pages 200

Syncs a standard endpoint (60 rows a call) against the sandbox at Exact's default limits
(60 calls per calendar minute, 5,000 a day) and prints calls per minute and 429s, counted
from the sandbox's request log. Takes a few minutes by design.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exact_sandbox.process import SandboxProcess
from tests.taprun import catalog_selecting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200, help="60-row pages to read")
    args = parser.parse_args()
    rows = args.pages * 60
    with SandboxProcess(sys.executable, ["--divisions", "101", "--volume", f"financial/Journals={rows}",
                                         "--eager"]) as sandbox, tempfile.TemporaryDirectory() as tmp:
        config = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
                  "refresh_token": sandbox.mint_refresh_token(), "token_store": f"{tmp}/t.json",
                  "base_url": sandbox.url, "divisions": [101], "route_deletes": False}
        Path(tmp, "c.json").write_text(json.dumps(config))
        Path(tmp, "cat.json").write_text(json.dumps(catalog_selecting(config, {"journals"})))
        sandbox.reset_log()
        started = time.time()
        subprocess.run([sys.executable, "-m", "tap_exactonline", "--config", f"{tmp}/c.json",
                        "--catalog", f"{tmp}/cat.json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       cwd=tmp, check=True)
        elapsed = time.time() - started
        log = [e for e in sandbox.log() if not e["path"].startswith("oauth2")]
    per_minute: dict[int, int] = {}
    for entry in log:
        minute = int(float(entry.get("time") or entry.get("ts") or 0) // 60)
        per_minute[minute] = per_minute.get(minute, 0) + 1
    full = sorted(per_minute.items())[1:-1]  # whole calendar minutes only
    print(f"calls: {len(log)} in {elapsed:.0f} s; 429s: {sum(1 for e in log if e['status'] == 429)}")
    print(f"calls per whole calendar minute: {[n for _, n in full]} (limit 60)")


if __name__ == "__main__":
    main()
