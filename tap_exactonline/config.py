"""tap-exactonline's own setting rules (types, names and connection: exactonline_api.settings_check).

Each rule returns one line per mistake that starts with the setting's name. Rules see only settings
whose type is already right, so they never trip over ``start_year: "twenty"``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from exactonline_api.datekinds import check_overrides, datetime_fields
from exactonline_api.errors import ConfigError
from exactonline_api.login_hint import auth_command
from exactonline_api.registry import BULK, STANDARD, SYNC, entities
from exactonline_api.settings_check import Config, positive
from exactonline_api.timeutil import parse_iso_utc
from tap_exactonline import shards
from tap_exactonline.parallel import MAX_PARALLEL_DIVISIONS

OVERRIDABLE = (SYNC, BULK, STANDARD)


def tap_problems(config: Config) -> list[str]:
    return [
        *_start(config),
        *_divisions(config.get("divisions")),
        *positive(config, "daily_call_reserve", minimum=0),
        *positive(config, "max_rate_limit_wait", minimum=0, what=" seconds"),
        *positive(config, "request_timeout", what=" seconds"),
        *_parallel(config.get("parallel_divisions")),
        *_api_overrides(config.get("api_overrides") or {}),
        *_date_fields(config.get("date_fields")),
        *_one_line_rule("division_shard", lambda: shards.parse(config.get("division_shard"))),
    ]


def _start(config: Config) -> list[str]:
    if config.get("start_date") and config.get("start_year"):
        return ["start_year: start_date is set too; keep one of them"]
    year = config.get("start_year")
    if isinstance(year, int) and not 2000 <= year <= 2100:
        return [f"start_year: {year} is not a plausible year; use e.g. 2023"]
    if config.get("start_date"):
        try:
            parse_iso_utc(str(config["start_date"]))
        except ValueError:
            return [f"start_date: {config['start_date']!r} is not an ISO 8601 date, e.g. 2024-01-01T00:00:00Z"]
    return []


def _parallel(value: object) -> list[str]:
    if isinstance(value, int) and not 1 <= value <= MAX_PARALLEL_DIVISIONS:
        return [f"parallel_divisions: {value} is out of range; use 1 to {MAX_PARALLEL_DIVISIONS}"]
    return []


def _divisions(divisions: object) -> list[str]:
    if not isinstance(divisions, list):
        return []
    bad = [d for d in divisions if isinstance(d, int) and d <= 0]
    if bad:
        return [f"divisions: {bad[0]} is not a division code; `{auth_command()}` lists the codes you granted"]
    if len(set(divisions)) != len(divisions):
        return ["divisions: a division is listed twice; list each once"]
    return []


def _api_overrides(overrides: dict) -> list[str]:
    known = entities()
    problems = []
    for stream, api in overrides.items():
        entity = known.get(stream)
        if entity is None:
            near = difflib.get_close_matches(stream, list(known), n=1)
            hint = f"did you mean {near[0]}?" if near else "`--discover` lists the streams"
            problems.append(f"api_overrides: {stream!r} is not a stream; {hint}")
        elif api not in OVERRIDABLE:
            problems.append(f"api_overrides: {stream}: {api!r} is not one of {', '.join(OVERRIDABLE)}")
        elif api != entity.api and api not in entity.alternatives:
            problems.append(f"api_overrides: {stream}: Exact has no {api} endpoint for it "
                            f"(available: {', '.join(entity.alternatives)})")
    return problems


def _date_fields(overrides: object) -> list[str]:
    return _one_line_rule("date_fields", lambda: check_overrides(overrides, datetime_fields()))


def _one_line_rule(name: str, rule: Callable[[], object]) -> list[str]:
    """A rule of another module that raises one ConfigError; its line, named like ours."""
    try:
        rule()
    except ConfigError as exc:
        text = str(exc)
        return [text if text.startswith((f"{name}:", f"{name}.")) else f"{name}: {text.removeprefix(name).lstrip()}"]
    return []
