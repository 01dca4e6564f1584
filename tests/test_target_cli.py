"""target-exactonline as a program: exit codes, the summary, one-line errors, no secrets anywhere."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.targetrun import DATA, target_config, token_strings

EXE = str(Path(sys.executable).parent / "target-exactonline")


def _run(config: dict, tmp_path: Path, input_name: str, env: dict | None = None) -> subprocess.CompletedProcess:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    return subprocess.run([EXE, "--config", str(config_path), "--input", str(DATA / input_name)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, **(env or {})})


def test_debug_logs_hold_neither_attachment_content_nor_tokens(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    proc = _run(config, tmp_path, "documents.singer", env={"TARGET_EXACTONLINE_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DEBUG" in proc.stderr
    inline = next(json.loads(line)["record"]["Attachments"][0]["Attachment"]
                  for line in (DATA / "documents.singer").read_text().splitlines()
                  if "invoice-2024-002.pdf" in line)
    assert inline[:40] not in proc.stderr
    file_b64 = base64.b64encode((DATA / "files" / "invoice-2024-001.pdf").read_bytes()).decode()
    assert file_b64[:40] not in proc.stderr
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    for secret in [config["client_secret"], config["refresh_token"],
                   *token_strings(tokens)]:
        assert secret not in proc.stderr


def test_clean_run_exits_zero_with_a_summary_and_the_state(sandbox, tmp_path):
    proc = _run(target_config(sandbox, tmp_path), tmp_path, "accounts_contacts.singer")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [
        {"bookmarks": {"accounts": {"file": "accounts.csv", "line": 4},
                       "contacts": {"file": "contacts.csv", "line": 4}}}]
    assert 'run summary: {"stream": "accounts", "created": 4, "updated": 0, "unchanged": 0, "rejected": 0}' \
        in proc.stderr
    assert 'run summary: {"stream": "contacts", "created": 4' in proc.stderr


def test_rejects_end_the_run_non_zero_with_a_one_line_reason_and_no_secret_leaks(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    with (tmp_path / "attachments" / "big.pdf").open("wb") as fh:
        fh.truncate(10 * 1024 * 1024 + 1)
    proc = _run(config, tmp_path, "bad_records.singer")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("target-exactonline: 12 records rejected (accounts: 3, contacts: 3, documents: 6); "
                           f"the reasons are in {config['reject_file']}")
    assert "Traceback" not in proc.stderr
    assert 'run summary: {"stream": "documents", "created": 1, "updated": 0, "unchanged": 0, "rejected": 6' \
        in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"bookmarks": {"bad": "end"}}

    tokens = json.loads((tmp_path / "tokens.json").read_text())
    secrets = [config["client_secret"], config["refresh_token"]]
    secrets += token_strings(tokens)
    assert len(secrets) >= 3
    rejects = Path(config["reject_file"]).read_text()
    for secret in secrets:
        assert secret not in proc.stderr and secret not in proc.stdout and secret not in rejects
    assert "base64" not in proc.stderr.lower() or "this is not base64" not in proc.stderr


def test_dry_run_exits_zero_and_writes_nothing(sandbox, tmp_path):
    proc = _run(target_config(sandbox, tmp_path, dry_run=True), tmp_path, "documents.singer")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "run summary (dry run: nothing written)" in proc.stderr
    assert not [c for c in sandbox.requests() if c["method"] in ("POST", "PUT", "DELETE")
                and not c["path"].startswith("oauth2/")]


def test_configuration_error_is_one_line(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path, base_url="http://exact.example.com")
    proc = _run(config, tmp_path, "accounts_contacts.singer")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "target-exactonline: base_url: 'http://exact.example.com' must start with https:// "
        "(plain http only on this machine)")


def test_about_lists_the_settings():
    proc = subprocess.run([EXE, "--about", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    about = json.loads(proc.stdout)
    props = about["settings"]["properties"]
    for name in ("client_id", "client_secret", "refresh_token", "token_store", "default_division", "natural_keys",
                 "attachments_dir", "reject_file", "dry_run", "batch_size", "ledger_path", "verify_unchanged"):
        assert props[name].get("description"), name
    assert props["client_secret"].get("secret") is True and props["token_store"].get("secret") is True

