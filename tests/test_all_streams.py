"""Breadth without the SDK's generated tests: every stream is discovered with a valid schema."""

from __future__ import annotations

import jsonschema

from exactonline_api.registry import entities
from tap_exactonline.tap import TapExactOnline

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
