"""The orchestrator's own logic, without Dagster: SCHEMA messages of the schema step,
what a shard's log says, and its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate.meltano import Settings, SettingsError, ShardRun, read_log
from orchestrate.tables import schema_messages
from tap_exactonline.tap import TapExactOnline
from tests.taprun import catalog_selecting


def test_schema_step_sends_the_schema_messages_the_tap_sends(tmp_path):
    config = {"client_id": "x", "client_secret": "y", "token_store": str(tmp_path / "t.json")}
    catalog = catalog_selecting(config, {"accounts", "gl_accounts"},
                                properties={"accounts": {"ID", "Division", "Code", "Name", "Timestamp"}})
    messages = {m["stream"]: m for m in schema_messages(catalog)}
    assert set(messages) == {"accounts", "gl_accounts"}

    # singer-sdk's own SCHEMA messages for the same catalog are the reference.
    tap = TapExactOnline(config=config, catalog=catalog, validate_config=False)
    for name, message in messages.items():
        stream = tap.streams[name]
        (expected,) = list(stream._generate_schema_messages())
        assert message["schema"] == expected.schema, name
        assert message["key_properties"] == list(expected.key_properties), name
    assert set(messages["accounts"]["schema"]["properties"]) >= {"ID", "Division", "Code", "Name"}
    assert "Email" not in messages["accounts"]["schema"]["properties"]


LOG = """\
2026-12-01T21:00:00Z [info ] 2026-12-01 21:00:00,1 INFO tap_exactonline division_shard 2/3: divisions [102, 107] of 5 (resync_activate_version is off: ...) cmd_type=elb name=tap-exactonline
2026-12-01T21:00:09Z [info ] INFO tap_exactonline run summary: {'division': 102, 'calls': 12, 'daily_remaining': 4988, 'records': {'accounts': 25}} cmd_type=elb
2026-12-01T21:00:09Z [info ] INFO tap_exactonline run summary: {"division": 107, "calls": 3, "records": {}} cmd_type=elb
2026-12-01T21:00:10Z [error] ERROR tap_exactonline transaction_lines division 107 failed, continuing with the other streams
"""


def test_shard_log_gives_divisions_summaries_and_errors(tmp_path):
    run = read_log(ShardRun("2/3", 1, 1.0, tmp_path / "x.log"), LOG.splitlines())
    assert run.divisions == [102, 107]
    assert run.divisions_text == "divisions [102, 107]"
    assert [s["division"] for s in run.summaries] == [102, 107]
    assert run.summaries[0]["records"] == {"accounts": 25} and run.summaries[0]["daily_remaining"] == 4988
    assert len(run.errors) == 1 and "division 107 failed" in run.errors[0]


def test_shard_that_failed_before_listing_divisions_says_so(tmp_path):
    run = read_log(ShardRun("1/3", 2, 1.0, tmp_path / "x.log"), ["meltano: something broke"])
    assert run.divisions is None and "unknown" in run.divisions_text


def test_settings_from_the_environment():
    settings = Settings.from_env({"EXACT_SHARDS": "8", "MELTANO_BIN": "/bin/meltano"})
    assert (settings.shards, settings.concurrency, settings.job) == (8, 8, "exact-to-warehouse")
    assert Settings.from_env({"EXACT_SHARDS": "8", "EXACT_SHARD_CONCURRENCY": "3"}).concurrency == 3
    assert Settings.from_env({}).extractor_and_loader() == ("tap-exactonline", "target-postgres")
    with pytest.raises(SettingsError, match="EXACT_SHARDS='many' is not a whole number"):
        Settings.from_env({"EXACT_SHARDS": "many"})
    with pytest.raises(SettingsError, match="EXACT_SHARDS=0 must be at least 1"):
        Settings.from_env({"EXACT_SHARDS": "0"})
    assert Settings.from_env({"MELTANO_PROJECT_ROOT": str(Path("/elsewhere"))}).project == Path("/elsewhere")
    with pytest.raises(SettingsError, match="EXACT_MELTANO_JOB='nope' is not a job"):
        Settings.from_env({"EXACT_MELTANO_JOB": "nope"}).extractor_and_loader()
