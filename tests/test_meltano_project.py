"""meltano.yml stands on its own: no Meltano Hub, every plugin fully defined, in step
with the tap's and the target's own settings. Checked on the shipped file (tests/project.py),
so a user's `meltano select` does not fail the suite."""

from __future__ import annotations

import re

from exactonline_api import registry
from tap_exactonline.tap import TapExactOnline
from target_exactonline.target import TargetExactOnline
from tests.project import shipped_meltano_yml, shipped_project_config

PROJECT = shipped_project_config()
PLUGINS = [(kind, p) for kind, plugins in PROJECT["plugins"].items() for p in plugins]
BASE_PLUGINS = [(kind, p) for kind, p in PLUGINS if "inherit_from" not in p]
# Settings every singer-sdk plugin has; meltano.yml need not repeat them.
SDK_SETTINGS = {"stream_maps", "stream_map_config", "faker_config", "flattening_enabled",
                "flattening_max_depth", "flattening_max_key_length", "flattening_separator",
                "batch_config", "load_method", "validate_records", "batch_size_rows",
                "process_activate_version_messages", "add_record_metadata"}
KINDS = {"string", "integer", "decimal", "boolean", "date_iso8601", "email", "file", "options",
         "object", "array", "oauth"}


def plugin(name: str) -> dict:
    return next(p for _, p in PLUGINS if p["name"] == name)


def test_no_plugin_needs_the_hub():
    assert BASE_PLUGINS
    for kind, p in BASE_PLUGINS:
        where = f"{kind}/{p['name']}"
        assert "variant" not in p, f"{where}: `variant` means a Hub lookup"
        # Utilities (dbt) are not Singer plugins: no capabilities.
        keys = ("namespace", "pip_url", "executable", "settings") + (("capabilities",) if kind != "utilities" else ())
        for key in keys:
            assert p.get(key), f"{where}: `{key}` missing (without it Meltano asks the Hub)"
        for setting in p["settings"]:
            assert setting.get("description"), f"{where}.{setting['name']}: no description"
            assert setting.get("kind") in KINDS, f"{where}.{setting['name']}: kind {setting.get('kind')!r}"
            if setting["kind"] == "options":
                assert setting.get("options"), f"{where}.{setting['name']}: options kind without options"
    for kind, p in PLUGINS:
        if "inherit_from" in p:
            assert p["inherit_from"] in {q["name"] for _, q in BASE_PLUGINS}, p["name"]


def test_third_party_plugins_are_pinned():
    for _, p in BASE_PLUGINS:
        url = p["pip_url"]
        if url.startswith("-e "):
            continue
        for requirement in url.split():
            assert re.search(r"==\d", requirement), f"{p['name']}: {requirement} is not pinned"
    assert plugin("target-postgres")["pip_url"].startswith("meltanolabs-target-postgres==")
    assert "target-duckdb" not in shipped_meltano_yml()  # 0.8.0 drops the first row of each batch


def test_secrets_are_sensitive_and_not_in_plain_text():
    for _, p in BASE_PLUGINS:
        for s in p["settings"]:
            if re.search(r"secret|password|token|sqlalchemy_url|private_key", s["name"]):
                assert s.get("sensitive") is True, f"{p['name']}.{s['name']} must be sensitive"
    prod = next(e for e in PROJECT["environments"] if e["name"] == "prod")
    for kind_plugins in prod["config"]["plugins"].values():
        for p in kind_plugins:
            for name, value in p.get("config", {}).items():
                if re.search(r"secret|password|token", name):
                    assert str(value).startswith("${"), f"prod {p['name']}.{name} must come from the environment"


def test_environments_jobs_and_schedules_fit_together():
    envs = {e["name"] for e in PROJECT["environments"]}
    assert {"demo", "prod"} <= envs
    assert PROJECT["default_environment"] in envs
    names = {p["name"] for _, p in PLUGINS}
    jobs = {j["name"]: j for j in PROJECT["jobs"]}
    for job in jobs.values():
        for task in job["tasks"]:
            for name in task.split():
                plugin_name, _, command = name.partition(":")  # dbt-postgres:run is a plugin command
                assert plugin_name in names, f"job {job['name']}: unknown plugin {plugin_name}"
                if command:
                    assert command in plugin(plugin_name).get("commands", {}), f"job {job['name']}: {name}"
    assert jobs["exact-to-warehouse"]["tasks"] == ["tap-exactonline target-postgres dbt-postgres:run"]
    assert jobs["exact-transaction-lines-hourly"]["tasks"] == ["tap-exactonline-hourly target-postgres"]
    schedules = {s["name"]: s for s in PROJECT["schedules"]}
    for s in schedules.values():
        assert s["job"] in jobs
    assert schedules["exact-transaction-lines-hourly"]["interval"] == "@hourly"
    for env in PROJECT["environments"]:
        for kind_plugins in env.get("config", {}).get("plugins", {}).values():
            for p in kind_plugins:
                assert p["name"] in names, f"environment {env['name']}: unknown plugin {p['name']}"


def _sdk_settings(cls) -> dict:
    return cls.config_jsonschema["properties"]


# Declared in meltano.yml for a plugin command rather than for the Singer config (none since the
# tap declares redirect_uri too: every setting Meltano passes is checked, an undeclared one is a mistake).
COMMAND_ONLY_SETTINGS: dict[str, set[str]] = {}


def _compare_with_plugin(meltano_name: str, properties: dict) -> None:
    declared = {s["name"]: s for s in plugin(meltano_name)["settings"]
                if s["name"] not in COMMAND_ONLY_SETTINGS.get(meltano_name, set())}
    own = {k: v for k, v in properties.items() if k not in SDK_SETTINGS}
    missing = sorted(set(own) - set(declared))
    assert not missing, f"{meltano_name}: settings of the plugin not declared in meltano.yml: {missing}"
    unknown = sorted(set(declared) - set(properties))
    assert not unknown, f"{meltano_name}: meltano.yml declares settings the plugin does not have: {unknown}"
    for name, prop in own.items():
        setting = declared[name]
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else types
        expected = {"boolean": {"boolean"}, "integer": {"integer"}, "number": {"decimal", "integer"},
                    "array": {"array"}, "object": {"object"}}
        for json_type, kinds in expected.items():
            if json_type in types:
                assert setting["kind"] in kinds, f"{meltano_name}.{name}: kind {setting['kind']} for {types}"
        if prop.get("secret") or prop.get("writeOnly"):
            assert setting.get("sensitive"), f"{meltano_name}.{name} is secret in the plugin"
        if "allowed_values" in prop or "enum" in prop:
            values = set(prop.get("enum") or prop.get("allowed_values"))
            if setting["kind"] == "options":
                assert {o["value"] for o in setting["options"]} == values, f"{meltano_name}.{name}"


def test_tap_settings_match_the_tap():
    _compare_with_plugin("tap-exactonline", _sdk_settings(TapExactOnline))


def test_target_settings_match_the_target():
    _compare_with_plugin("target-exactonline", _sdk_settings(TargetExactOnline))


def test_tap_streams_selected_by_the_main_job_exist():
    streams = set(registry.entities())
    for name in ("tap-exactonline", "tap-exactonline-hourly"):
        for pattern in plugin(name)["select"]:
            stream = pattern.lstrip("!").split(".", 1)[0]
            assert stream in streams, f"{name} selects unknown stream {stream}"
    main = {p.split(".", 1)[0] for p in plugin("tap-exactonline")["select"]}
    assert main == set(registry.DEFAULT_SELECTED), "the main job should select the tap's curated default set"
