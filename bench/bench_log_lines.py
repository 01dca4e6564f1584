"""Figures: how many log lines a clean tap run writes at the default log level.

    .venv/bin/python bench/bench_log_lines.py [--divisions 101,102] [--streams accounts,contacts,...]

Runs ``python -m tap_exactonline`` once against the sandbox (as a scheduler would: config and
catalog files, default LOGLEVEL) and prints the stderr lines, per (stream, division), the WARNING
lines and the most frequent message kinds. To measure another checkout's code, put it first on
PYTHONPATH (the tap runs in a child process that inherits it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from exact_sandbox.process import SandboxProcess
from tests.taprun import catalog_selecting

STREAMS = "accounts,contacts,items,gl_accounts,journals,sales_invoices,transaction_lines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divisions", default="101,102")
    parser.add_argument("--streams", default=STREAMS)
    args = parser.parse_args()
    divisions = [int(d) for d in args.divisions.split(",")]
    streams = set(args.streams.split(","))
    env = {k: v for k, v in os.environ.items() if not k.endswith("LOGLEVEL") and k != "SINGER_SDK_LOG_CONFIG"}
    with SandboxProcess(sys.executable, ["--divisions", args.divisions]) as sandbox, \
            tempfile.TemporaryDirectory() as tmp:
        config = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
                  "refresh_token": sandbox.mint_refresh_token(), "token_store": f"{tmp}/t.json",
                  "base_url": sandbox.url, "divisions": divisions}
        Path(tmp, "c.json").write_text(json.dumps(config))
        Path(tmp, "cat.json").write_text(json.dumps(catalog_selecting(config, streams)))
        proc = subprocess.run([sys.executable, "-m", "tap_exactonline", "--config", f"{tmp}/c.json",
                               "--catalog", f"{tmp}/cat.json"], capture_output=True, text=True, env=env, cwd=tmp,
                              stdin=subprocess.DEVNULL)
    lines = proc.stderr.splitlines()
    pairs = len(streams) * len(divisions)
    kinds = collections.Counter(" ".join(line.split("|")[-1].split()[:3]) for line in lines)
    print(f"exit code {proc.returncode}; {len(streams)} streams x {len(divisions)} divisions")
    print(f"stderr lines: {len(lines)} ({len(lines) / pairs:.1f} per stream and division)")
    print(f"WARNING lines: {sum('WARNING' in line for line in lines)}")
    for kind, count in kinds.most_common(5):
        print(f"  {count:5d}  {kind} ...")


if __name__ == "__main__":
    main()
