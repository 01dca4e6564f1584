"""Regenerate exactonline_api/data/endpoints.json from the shared Exact metadata.

The shared file (../shared/exact_api/endpoints.json) is research output with
provenance for every field. The package keeps only what code reads: paths,
kinds, keys, methods, page sizes and typed fields. Run after the shared file
changes:

    python scripts/update_endpoints.py [path/to/endpoints.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "exact_api" / "endpoints.json"
TARGET = ROOT / "exactonline_api" / "data" / "endpoints.json"

ENDPOINT_KEYS = (
    "name", "path", "kind", "service", "beta", "primary_key", "methods", "page_size",
    "deprecated", "standard_counterpart", "entity_id_field", "requires_select",
    "mandatory_on_post", "mandatory_filter_fields", "deleted_entity_types",
)
FIELD_KEYS = ("name", "type", "key", "post", "put", "description")


def trim(source: dict) -> dict:
    endpoints = []
    for ep in source["endpoints"]:
        row = {k: ep[k] for k in ENDPOINT_KEYS if ep.get(k) not in (None, [], {})}
        row["fields"] = [
            {k: f[k] for k in FIELD_KEYS if f.get(k) not in (None, "")}
            for f in ep["fields"]
        ]
        endpoints.append(row)
    return {
        "generated_from": source["meta"].get("sources"),
        "base_urls": source["base_urls"],
        "deleted_entity_types": source["deleted_entity_types"],
        "endpoints": sorted(endpoints, key=lambda e: e["path"]),
    }


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    data = trim(json.loads(src.read_text()))
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    print(f"wrote {len(data['endpoints'])} endpoints to {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
