"""The stored table of every stream (docs/streams.md), rendered from the registry.

A change to the registry or to endpoints.json that adds, renames or re-routes a
stream then shows as a diff of that file in review, not only as a changed count.
Regenerate after an intended change:

    .venv/bin/python -m tests.stream_table
"""

from __future__ import annotations

from pathlib import Path

from exactonline_api import registry

TABLE = Path(__file__).resolve().parents[1] / "docs" / "streams.md"

HEADER = """# Streams of tap-exactonline

Generated from the registry (`exactonline_api/registry.py` over `exactonline_api/data/endpoints.json`);
`tests/test_stream_table.py` fails when it is out of date. Regenerate with
`.venv/bin/python -m tests.stream_table`.

| stream | API | path | key | replication key | selected by default |
|---|---|---|---|---|---|
"""


def _path(entity: registry.Entity) -> str:
    if entity.parent is not None:
        return f"{entity.parent.parent.path} ($expand={entity.parent.navigation})"
    return entity.source.path


def render() -> str:
    rows = [
        f"| {name} | {e.api} | `{_path(e)}` | {', '.join(e.key)} | {e.replication_key or ''} "
        f"| {'yes' if e.selected_by_default else ''} |"
        for name, e in registry.entities().items()
    ]
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    TABLE.write_text(render())
    print(f"wrote {TABLE} ({len(registry.entities())} streams)")
