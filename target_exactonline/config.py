"""target-exactonline's own setting rules (types, names and connection: exactonline_api.settings_check).

Each rule returns one line per mistake that starts with the setting's name. Rules see only settings
whose type is already right.
"""

from __future__ import annotations

import os
from pathlib import Path

from exactonline_api.errors import ConfigError
from exactonline_api.settings_check import Config, file_problems, folder_problems, positive
from target_exactonline.ledger import ledger_path
from target_exactonline.sinks import entity_for_stream, natural_key_for


def target_problems(config: Config) -> list[str]:
    problems = [
        *positive(config, "default_division", what=" (a division code)"),
        *positive(config, "batch_size"),
        *positive(config, "request_timeout", what=" seconds"),
        *positive(config, "daily_call_reserve", minimum=0),
        *_natural_keys(config),
    ]
    if isinstance(config.get("attachments_dir"), str):
        problems += folder_problems("attachments_dir", config["attachments_dir"])
    if isinstance(config.get("reject_file"), str):
        problems += file_problems("reject_file", _path(config["reject_file"]))
    if isinstance(config.get("ledger_path"), str) and not config.get("dry_run"):
        problems += file_problems("ledger_path", ledger_path(config))
    return problems


def _path(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


def _natural_keys(config: Config) -> list[str]:
    keys = config.get("natural_keys")
    if not isinstance(keys, dict):
        return []
    problems = []
    for stream, fields in keys.items():
        if isinstance(fields, str):
            fields = [fields]
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
            problems.append(f"natural_keys: {stream}: must be a list of field names, e.g. [\"Code\"]")
            continue
        try:  # the same lookups the sink makes when the stream arrives, made before any call
            entity, endpoint = entity_for_stream(stream)
            natural_key_for(stream, entity, endpoint, {"natural_keys": {stream: fields}})
        except ConfigError as exc:
            problems.append(f"natural_keys: {exc}")
    return problems
