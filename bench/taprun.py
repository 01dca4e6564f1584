"""The tap as a benchmark runs it: its own process, one stream selected, output to a file."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TapRun:
    wall: float  # seconds, process start to exit
    cpu: float  # the tap's user + system seconds, start-up included
    peak_mb: float  # max RSS of the children so far
    records: int


def run_tap_on(tmp: str, config: dict, stream: str, before_run=lambda: None) -> TapRun:
    """Discover, select only ``stream``, call ``before_run`` (e.g. clear the sandbox log), sync."""
    Path(tmp, "config.json").write_text(json.dumps(config))
    catalog = json.loads(subprocess.run(
        [sys.executable, "-m", "tap_exactonline", "--config", f"{tmp}/config.json", "--discover"],
        capture_output=True, text=True, check=True, cwd=tmp).stdout)
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if not md["breadcrumb"]:
                md["metadata"]["selected"] = entry["tap_stream_id"] == stream
    Path(tmp, "catalog.json").write_text(json.dumps(catalog))
    before_run()

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(f"{tmp}/out.singer", "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "tap_exactonline", "--config", f"{tmp}/config.json",
             "--catalog", f"{tmp}/catalog.json"],
            stdout=out, stderr=subprocess.PIPE, cwd=tmp, env={**os.environ, "LOGLEVEL": "WARNING"})
    wall = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"tap failed: {proc.stderr.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(f"{tmp}/out.singer", "rb") as out:
        records = sum(1 for line in out if b'"RECORD"' in line[:30])
    return TapRun(wall, cpu, after.ru_maxrss / 1024, records)
