"""Every setting of tap and target is checked before the first call: one line per mistake, naming it.

Most cases construct the plugin in-process (the check runs in ``__init__``, before any call is
possible); a few run the real console commands to show what a person sees: exit 1, no traceback,
a handful of lines, the last one naming the setting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exactonline_api.registry import entities
from exactonline_api.settings_check import BadSettings
from tap_exactonline.tap import TapExactOnline
from target_exactonline.target import TargetExactOnline

BIN = Path(sys.executable).parent
# A closed port: a plugin that called out anyway would fail with a connection error instead.
NOWHERE = "http://127.0.0.1:9"


def _base(tmp_path: Path) -> dict:
    return {"client_id": "sandbox-client-id", "client_secret": "sandbox-secret", "base_url": NOWHERE,
            "token_store": str(tmp_path / "tokens.json")}


def _no_bulk_stream() -> str:
    return next(name for name, e in entities().items() if "bulk" not in e.alternatives and e.api != "bulk")


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "plain-file"
    path.write_text("not a folder")
    return path


COMMON = [  # (setting, bad value), for tap and target alike
    ("client_id", None),  # None: removed from the config
    ("client_secret", ""),
    ("country", "xx"),
    ("base_url", "http://example.com"),
    ("token_store", "s3://bucket/tokens.json"),
    ("token_store", "{file}/tokens.json"),
    ("refresh_token", 12345),
    ("request_timeout", 0),
    ("request_timeout", "fast"),
    ("daily_call_reserve", -1),
    ("metrics_log_level", "LOUD"),
    ("hourly_error_budget", 10),
]

TAP = [
    ("start_year", "twenty"),
    ("start_year", 1900),
    ("start_date", "yesterday"),
    ("divisions", "101"),
    ("divisions", [101, "x"]),
    ("divisions", [0]),
    ("max_rate_limit_wait", -1),
    ("parallel_divisions", 17),
    ("division_shard", "9/8"),
    ("trim_text", "yes"),
    ("route_deletes", "yes"),
    ("resync_activate_version", "no"),
    ("redirect_uri", 8080),
    ("api_overrides", {"acounts": "bulk"}),
    ("api_overrides", {"accounts": "fast"}),
    ("api_overrides", {"{no_bulk}": "bulk"}),
    ("api_overrides", ["accounts"]),
    ("divisons", [101]),
    ("date_fields", {"acounts": {"Created": "date"}}),
    ("date_fields", {"accounts": {"Created": "day"}}),
    ("date_fields", "accounts"),
]

TARGET = [
    ("default_division", 0),
    ("default_division", "main"),
    ("natural_keys", {"acounts": ["Code"]}),
    ("natural_keys", {"accounts": ["Kode"]}),
    ("natural_keys", {"accounts": []}),
    ("natural_keys", {"gl_transaction_types": ["Description"]}),  # read-only in Exact
    ("attachments_dir", "{tmp}/no-such-folder"),
    ("attachments_dir", "{file}"),
    ("reject_file", "{file}/rejects.jsonl"),
    ("reject_file", "{tmp}"),
    ("ledger_path", "{file}/ledger.sqlite"),
    ("batch_size", 0),
    ("dry_run", "yes"),
    ("verify_unchanged", "no"),
    ("natural_key", {"accounts": ["Code"]}),
    ("resend_refused", "yes"),
]


def _bad(tmp_path: Path, setting: str, value):
    config = _base(tmp_path)
    if value is None:
        config.pop(setting)
        return config
    text = json.dumps(value)
    text = (text.replace("{file}", str(_a_file(tmp_path))).replace("{tmp}", str(tmp_path))
            .replace("{no_bulk}", _no_bulk_stream()))
    config[setting] = json.loads(text)
    return config


def names(line: str, setting: str) -> bool:
    """The line starts with the setting (``date_fields.accounts.Created: ...`` names one inside it)."""
    return line.startswith((f"{setting}: ", f"{setting}."))


def _lines(plugin, config: dict) -> list[str]:
    with pytest.raises(BadSettings) as caught:
        plugin(config=config)
    return caught.value.lines


@pytest.mark.parametrize(("setting", "value"), COMMON + TAP, ids=lambda v: str(v)[:30])
def test_tap_names_each_bad_setting(tmp_path, setting, value):
    lines = _lines(TapExactOnline, _bad(tmp_path, setting, value))
    assert len(lines) == 1, lines
    assert names(lines[-1], setting), lines


@pytest.mark.parametrize(("setting", "value"), COMMON + TARGET, ids=lambda v: str(v)[:30])
def test_target_names_each_bad_setting(tmp_path, setting, value):
    lines = _lines(TargetExactOnline, _bad(tmp_path, setting, value))
    assert len(lines) == 1, lines
    assert names(lines[-1], setting), lines


def test_several_mistakes_get_a_line_each(tmp_path):
    config = {**_base(tmp_path), "start_year": "twenty", "country": "xx", "divisons": [1]}
    lines = _lines(TapExactOnline, config)
    assert sorted(line.split(":")[0] for line in lines) == ["country", "divisons", "start_year"]


def test_a_good_config_passes_and_writes_nothing(tmp_path):
    TapExactOnline(config={**_base(tmp_path), "start_year": 2023, "divisions": [101],
                           "api_overrides": {"accounts": "bulk"}, "redirect_uri": "https://example.com/cb"})
    TargetExactOnline(config={**_base(tmp_path), "natural_keys": {"accounts": ["Code"]},
                              "attachments_dir": str(tmp_path), "reject_file": str(tmp_path / "r.jsonl")})
    assert list(tmp_path.iterdir()) == []  # probing the folders left nothing behind


def test_secret_values_never_appear(tmp_path):
    config = {**_base(tmp_path), "token_store": "postgresql://exact:hunter2-secret@/tokens"}
    lines = _lines(TapExactOnline, config)
    assert lines[-1].startswith("token_store: ") and "hunter2" not in " ".join(lines)


def _run(command: str, config: dict | str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    if isinstance(config, dict):
        (tmp_path / "config.json").write_text(json.dumps(config))
        config = str(tmp_path / "config.json")
    return subprocess.run([str(BIN / command), "--config", config], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, cwd=tmp_path, env={**os.environ, **(env or {})})


def _one_clear_line(proc: subprocess.CompletedProcess, command: str, setting: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) <= 4, lines
    assert lines[-1].startswith(f"{command}: {setting}: "), lines


@pytest.mark.parametrize(("command", "setting", "value"), [
    ("tap-exactonline", "start_year", "twenty"),
    ("tap-exactonline", "token_store", "{file}/tokens.json"),
    ("tap-exactonline", "api_overrides", {"acounts": "bulk"}),
    ("target-exactonline", "attachments_dir", "{tmp}/missing"),
    ("target-exactonline", "natural_keys", {"accounts": ["Kode"]}),
])
def test_console_commands_end_in_one_line_naming_the_setting(tmp_path, command, setting, value):
    _one_clear_line(_run(command, _bad(tmp_path, setting, value), tmp_path), command, setting)


def test_environment_variables_are_named_too(tmp_path):
    env = {"TAP_EXACTONLINE_CLIENT_ID": "x", "TAP_EXACTONLINE_CLIENT_SECRET": "y",
           "TAP_EXACTONLINE_START_YEAR": "twenty"}
    proc = _run("tap-exactonline", "ENV", tmp_path, env)
    _one_clear_line(proc, "tap-exactonline", "start_year")
    assert "TAP_EXACTONLINE_START_YEAR='twenty'" in proc.stderr


def test_a_bad_setting_costs_no_call(sandbox, tmp_path):
    config = {**_base(tmp_path), "base_url": sandbox.url, "refresh_token": sandbox.mint_refresh_token(),
              "divisions": [101], "api_overrides": {"acounts": "bulk"}}
    sandbox.reset_log()
    _one_clear_line(_run("tap-exactonline", config, tmp_path), "tap-exactonline", "api_overrides")
    assert sandbox.requests() == []
    assert not (tmp_path / "tokens.json").exists()

