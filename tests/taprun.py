"""Run tap-exactonline against a sandbox and collect what it wrote."""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from exactonline_api.errors import ExactError
from tap_exactonline.tap import TapExactOnline


def sandbox_connection(sandbox, tmp_path: Path) -> dict:
    """The settings tap and target share to reach a sandbox with a fresh token chain."""
    return {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.mint_refresh_token(),
        "token_store": str(tmp_path / "tokens.json"),
        "base_url": sandbox.url,
    }


def tap_config(sandbox, tmp_path: Path, **extra) -> dict:
    return {**sandbox_connection(sandbox, tmp_path), "divisions": list(sandbox.divisions), **extra}


# The settings discovery reads (TapExactOnline.discover_streams; route_deletes gives the entity streams
# their _sdc_deleted_at), and the SDK's own that could reach the catalog (stream maps, flattening).
# tests/test_all_streams.py checks that no other setting of the tap changes the catalog, so a new one
# that does fails there, not as a stale catalog here.
DISCOVERY_SETTINGS = frozenset({"date_fields", "api_overrides", "route_deletes", "stream_maps", "stream_map_config",
                                "flattening_enabled", "flattening_max_depth"})
_discovered: dict[str, str] = {}


def discovered_catalog(config: dict) -> dict:
    """The tap's discovered catalog for ``config``, discovered once per set of settings that can
    change it (a discovery builds 268 schemas: about a second of CPU that hundreds of runs repeat)."""
    key = json.dumps({k: v for k, v in config.items() if k in DISCOVERY_SETTINGS}, sort_keys=True, default=str)
    if key not in _discovered:
        # A copy: the SDK fills the defaults into the dict it is given, which would change the key.
        _discovered[key] = json.dumps(TapExactOnline(config=dict(config), validate_config=False).catalog_dict)
    return json.loads(_discovered[key])


def catalog_selecting(config: dict, streams: set[str], properties: dict[str, set[str]] | None = None) -> dict:
    """The discovered catalog with exactly ``streams`` selected (and optionally some properties)."""
    catalog = discovered_catalog(config)
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        wanted = (properties or {}).get(entry["tap_stream_id"])
        for md in entry["metadata"]:
            if not md["breadcrumb"]:
                md["metadata"]["selected"] = chosen
            elif wanted is not None and md["metadata"].get("inclusion") != "automatic":
                md["metadata"]["selected"] = md["breadcrumb"][-1] in wanted
    return catalog


@dataclass
class TapOutput:
    messages: list[dict]
    records: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    state: dict | None = None
    error: Exception | None = None

    @classmethod
    def parse(cls, text: str) -> TapOutput:
        out = cls(messages=[json.loads(line) for line in text.splitlines() if line.strip()])
        for msg in out.messages:
            if msg["type"] == "RECORD":
                out.records[msg["stream"]].append(msg["record"])
            elif msg["type"] == "STATE":
                out.state = msg["value"]
        return out


def run_tap(config: dict, *, streams: set[str] | None = None, state: dict | None = None,
            catalog: dict | None = None, allow_error: bool = False) -> TapOutput:
    if catalog is None and streams is not None:
        catalog = catalog_selecting(config, streams)
    # The tap's msgspec writer writes bytes to sys.stdout.buffer, as on a real pipe.
    buffer = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    error = None
    with contextlib.redirect_stdout(buffer):
        tap = TapExactOnline(config=dict(config), state=state, catalog=catalog)  # a copy: see discovered_catalog
        try:
            tap.sync_all()
        except ExactError as exc:  # a budget stop or failed stream: what was written still counts
            error = exc
    buffer.flush()
    out = TapOutput.parse(buffer.buffer.getvalue().decode())
    out.error = error
    if error is not None and not allow_error:
        raise error
    return out


def upsert(rows: list[dict], key: tuple[str, ...]) -> dict[tuple, dict]:
    """What a warehouse holds after upserting ``rows`` in order (tombstones kept as rows)."""
    table: dict[tuple, dict] = {}
    for row in rows:
        table[tuple(row[k] for k in key)] = row
    return table
