"""transform/ (the dbt project) fits the rest of the project, checked without running dbt:
its sources are streams the main job loads, and every model is documented with a key test."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TRANSFORM = ROOT / "transform"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_source_table_is_a_stream_the_main_job_loads():
    project = _yaml(ROOT / "meltano.yml")
    tap = next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-exactonline")
    selected = {pattern.split(".", 1)[0] for pattern in tap["select"]}
    source = _yaml(TRANSFORM / "models" / "staging" / "_sources.yml")["sources"][0]
    tables = {t["name"] for t in source["tables"]}
    assert tables and tables <= selected, f"sources the main job does not load: {sorted(tables - selected)}"


def test_every_model_has_its_key_tested():
    models = {p.stem for p in (TRANSFORM / "models").rglob("*.sql")}
    documented = {}
    for path in (TRANSFORM / "models").rglob("_*.yml"):
        for model in _yaml(path).get("models", []):
            documented[model["name"]] = model
    assert models == set(documented), f"models without a yml entry: {sorted(models - set(documented))}"
    for name, model in documented.items():
        keys = [t["unique_key"]["arguments"]["columns"] for t in model.get("tests", []) if "unique_key" in t]
        assert keys, f"{name}: no unique_key test"
        assert keys[0][0] == "division", f"{name}: the key must start with the division"


def test_the_job_transforms_after_loading_and_dbt_tests_are_a_command():
    project = _yaml(ROOT / "meltano.yml")
    job = next(j for j in project["jobs"] if j["name"] == "exact-to-warehouse")
    assert job["tasks"][0].split()[-1] == "dbt-postgres:run"
    dbt = next(p for p in project["plugins"]["utilities"] if p["name"] == "dbt-postgres")
    assert {"run", "test"} <= set(dbt["commands"])
    settings = {s["name"]: s for s in dbt["settings"]}
    assert settings["project_dir"]["value"].endswith("/transform")
    assert (TRANSFORM / "dbt_project.yml").exists() and (TRANSFORM / "profiles" / "profiles.yml").exists()


def test_the_warehouse_url_splits_into_what_dbt_postgres_takes():
    from scripts.statements import connection_env

    socket = connection_env("postgresql+psycopg://postgres@/exactonline_demo?host=/tmp/demo%20dir/pg")
    assert socket == {"DEMO_WAREHOUSE_HOST": "/tmp/demo dir/pg", "DEMO_WAREHOUSE_PORT": "5432",
                      "DEMO_WAREHOUSE_USER": "postgres", "DEMO_WAREHOUSE_PASSWORD": "",
                      "DEMO_WAREHOUSE_DATABASE": "exactonline_demo"}
    tcp = connection_env("postgresql://ana:p%40ss@db.example:6432/warehouse")
    assert (tcp["DEMO_WAREHOUSE_HOST"], tcp["DEMO_WAREHOUSE_PORT"], tcp["DEMO_WAREHOUSE_USER"],
            tcp["DEMO_WAREHOUSE_PASSWORD"], tcp["DEMO_WAREHOUSE_DATABASE"]) == (
        "db.example", "6432", "ana", "p@ss", "warehouse")
