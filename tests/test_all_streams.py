"""Breadth without the SDK's generated tests: every stream is discovered with a valid schema."""

from __future__ import annotations

import jsonschema

from exactonline_api.registry import entities
from tap_exactonline.tap import TapExactOnline
from tests.taprun import DISCOVERY_SETTINGS

CONFIG = {"client_id": "c", "client_secret": "s", "refresh_token": "r", "base_url": "http://127.0.0.1:9",
          "divisions": [101]}


def test_discovery_lists_every_stream_with_a_valid_schema_key_and_metadata():
    catalog = TapExactOnline(config=CONFIG).catalog_dict  # discovery makes no call to Exact
    by_name = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}
    assert sorted(by_name) == sorted(entities())
    problems = []
    for name, entry in by_name.items():
        entity, schema = entities()[name], entry["schema"]
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"{name}: invalid schema: {exc.message}")
            continue
        properties = schema["properties"]
        root = next(md["metadata"] for md in entry["metadata"] if not md["breadcrumb"])
        if entry["key_properties"] != list(entity.key) or not set(entity.key) <= set(properties):
            problems.append(f"{name}: key {entry['key_properties']} vs registry {entity.key}")
        if "Division" not in entity.key:
            problems.append(f"{name}: Division is not part of the key")
        if entry.get("replication_key") != entity.replication_key or (
                entity.replication_key and entity.replication_key not in properties):
            problems.append(f"{name}: replication key {entry.get('replication_key')!r}")
        if root.get("selected-by-default", False) != entity.selected_by_default:
            problems.append(f"{name}: selected-by-default {root.get('selected-by-default')}")
        for prop, spec in properties.items():
            types = spec.get("type")
            if not types or (prop not in entity.key and "null" not in types):
                problems.append(f"{name}.{prop}: type {types!r} (non-key fields must allow null)")
    assert not problems, "\n".join(problems)


# Values other than the defaults, for the settings whose form matters.
OTHER_VALUES = {"division_shard": "2/3", "base_url": "http://127.0.0.1:8", "token_store": "/nonexistent/tokens.json",
                "start_year": 2021}
EXCLUSIVE = ("start_year",)  # with start_date, refused by the settings check: set on its own


def _other_value(name: str, spec: dict):
    if name in OTHER_VALUES:
        return OTHER_VALUES[name]
    default, types = spec.get("default"), spec["type"]
    if "enum" in spec:
        return next(value for value in spec["enum"] if value != default)
    if "boolean" in types:
        return not default
    if "integer" in types:
        return (default or 0) + 3
    if "array" in types:
        return [101, 102]
    if "object" in types:
        return {"accounts": {}}
    return "2021-03-04T05:06:07Z" if spec.get("format") == "date-time" else "other"


def test_discovery_depends_on_no_setting_but_the_discovery_settings():
    """tests/taprun.py discovers once per value of DISCOVERY_SETTINGS: every other setting of the
    tap, set to a value other than its default, leaves the catalog as it is."""
    others = {name: _other_value(name, spec) for name, spec in TapExactOnline.config_jsonschema["properties"].items()
              if name not in DISCOVERY_SETTINGS}
    assert {"request_timeout", "daily_call_reserve", "trim_text", "start_date", "start_year"} <= set(others)
    plain = TapExactOnline(config=dict(CONFIG), validate_config=False).catalog_dict
    for changed in ({k: v for k, v in others.items() if k not in EXCLUSIVE}, {k: others[k] for k in EXCLUSIVE}):
        catalog = TapExactOnline(config={**CONFIG, **changed}, validate_config=False).catalog_dict
        differing = [a["tap_stream_id"] for a, b in zip(plain["streams"], catalog["streams"]) if a != b]
        assert differing == [] and len(catalog["streams"]) == len(plain["streams"]), (
            f"with {sorted(changed)}, {differing[:5]} differ: add the setting that changes discovery to "
            "DISCOVERY_SETTINGS in tests/taprun.py")
