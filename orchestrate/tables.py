"""The schema step: create and alter the job's tables once, before the shards start.

target-postgres checks for a table and creates it when missing, and adds missing
columns, without a lock. Shards that start together race: one of them fails with
``DuplicateTable: relation "accounts" already exists`` (seen in 2 of 3 tries with three
loaders on ten streams). So the orchestrator first sends the loader the SCHEMA message
of every selected stream, nothing else: the loader creates the schema, the tables and
their columns, and the shards after it find nothing to change.

The SCHEMA messages are the ones the tap would send: the catalog Meltano hands the tap
(the job's selection applied), minus deselected properties, as singer-sdk does.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from orchestrate.meltano import Settings, sys_dir_env, system_dir


def _selected(metadata: dict, default: bool = True) -> bool:
    if metadata.get("inclusion") == "automatic":
        return True
    if metadata.get("inclusion") == "unsupported":
        return False
    return bool(metadata.get("selected", metadata.get("selected-by-default", default)))


def schema_messages(catalog: dict) -> list[dict]:
    """A SCHEMA message per selected stream of a Singer catalog."""
    messages = []
    for entry in catalog["streams"]:
        metadata = {tuple(m["breadcrumb"]): m["metadata"] for m in entry.get("metadata", [])}
        top = metadata.get((), {})
        if not _selected(top, default=False):
            continue
        schema = dict(entry["schema"])
        schema["properties"] = {name: prop for name, prop in schema.get("properties", {}).items()
                                if _selected(metadata.get(("properties", name), {}))}
        messages.append({"type": "SCHEMA", "stream": entry.get("stream") or entry["tap_stream_id"],
                         "schema": schema,
                         "key_properties": entry.get("key_properties") or top.get("table-key-properties") or []})
    return messages


def _meltano(settings: Settings, env: dict, *args: str, stdin: str | None = None,
             log: Path | None = None) -> str:
    proc = subprocess.run([settings.meltano, *args], cwd=settings.project, env=env, input=stdin,
                          capture_output=True, text=True)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise RuntimeError(f"meltano {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def prepare_tables(settings: Settings, log_dir: Path) -> dict:
    """Send the loader the job's SCHEMA messages; returns the catalog they came from.

    The shards run with this catalog too (``run_shard``), so the tap's discovery runs
    once per run of the orchestrator, not once per shard.
    """
    extractor, loader = settings.extractor_and_loader()
    env = {**os.environ, **sys_dir_env(settings, "tables")}
    catalog = json.loads(_meltano(settings, env, "invoke", "--dump=catalog", extractor))
    messages = schema_messages(catalog)
    log_dir.mkdir(parents=True, exist_ok=True)
    _meltano(settings, env, "invoke", loader, stdin="".join(json.dumps(m) + "\n" for m in messages),
             log=log_dir / "tables.log")
    return catalog


if __name__ == "__main__":  # the schema step alone, for shards started by something else than Dagster
    settings = Settings.from_env()
    prepared = prepare_tables(settings, system_dir(settings) / "logs" / "orchestrate")
    print(f"tables ready for {len(schema_messages(prepared))} streams")
