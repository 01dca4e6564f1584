"""A clean run is quiet at the default level; the SDK's metrics stay one setting (or DEBUG) away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.taprun import catalog_selecting, tap_config

EXE = str(Path(sys.executable).parent / "tap-exactonline")
STREAMS = {"accounts", "contacts", "items", "gl_accounts", "journals", "sales_invoices", "transaction_lines"}
DIVISIONS = [101, 102]


def _run_tap(sandbox, tmp_path: Path, env: dict | None = None, **settings) -> subprocess.CompletedProcess:
    config = {**tap_config(sandbox, tmp_path), "divisions": DIVISIONS, **settings}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog_selecting(config, STREAMS)))
    environ = {k: v for k, v in os.environ.items() if not k.endswith("LOGLEVEL") and k != "SINGER_SDK_LOG_CONFIG"}
    proc = subprocess.run([EXE, "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path,
                          env={**environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _records(proc: subprocess.CompletedProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            counts[message["stream"]] = counts.get(message["stream"], 0) + 1
    return counts


def test_a_clean_run_writes_few_lines_and_no_warning(sandbox, tmp_path):
    proc = _run_tap(sandbox, tmp_path)
    lines = proc.stderr.splitlines()
    assert set(_records(proc)) == STREAMS  # quiet, not idle: every stream delivered rows
    assert len(lines) <= 1.5 * len(STREAMS) * len(DIVISIONS) + 20, "\n".join(lines)
    assert not [line for line in lines if "WARNING" in line or "ERROR" in line]
    assert "METRIC" not in proc.stderr and "Skipping deselected stream" not in proc.stderr
    assert "run summary" in proc.stderr  # what the run did is still said, once per division


def test_metrics_come_back_with_the_setting(sandbox, tmp_path):
    proc = _run_tap(sandbox, tmp_path, metrics_log_level="INFO")
    metrics = [line for line in proc.stderr.splitlines() if "METRIC:" in line]
    # One record_count per stream and division at least, logged at INFO as the setting asks.
    counted = [json.loads(line.split("METRIC: ", 1)[1]) for line in metrics if '"record_count"' in line]
    assert {m["tags"]["stream"] for m in counted} == STREAMS
    assert all("| INFO " in line for line in metrics)
    assert "Skipping deselected stream" not in proc.stderr


def test_debug_shows_everything_that_was_demoted(sandbox, tmp_path):
    proc = _run_tap(sandbox, tmp_path, env={"TAP_EXACTONLINE_LOGLEVEL": "DEBUG"})
    assert "| DEBUG    | singer_sdk.metrics" in proc.stderr
    assert "| DEBUG    | tap-exactonline                | Skipping deselected stream" in proc.stderr
    # Bulk/standard streams are unsorted on purpose (logs.py says why): a DEBUG line, not a WARNING.
    assert "| DEBUG    | singer_sdk                     | Stream is assumed to be unsorted" in proc.stderr
