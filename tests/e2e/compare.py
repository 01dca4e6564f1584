"""Compare what landed in the warehouse with what the sandbox holds.

The sandbox's admin API returns its records raw (Exact's wire format: ``/Date(ms)/`` in
Amsterdam wall-clock time, GUIDs as strings, ...); target-postgres stores the tap's
output in typed columns named exactly like Exact's fields. Values are brought to one
form by the field's Edm type from the registry before comparing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from exactonline_api.registry import Entity, entities
from exactonline_api.timeutil import parse_exact_datetime

SKIP = object()


def entity(stream: str) -> Entity:
    return entities()[stream]


def records_path(stream: str) -> str:
    """The path to ask the sandbox's admin API for this stream's records."""
    return entity(stream).source.path


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def normalize(value, edm: str, *, calendar: bool = False):
    """One comparable form per Edm type; SKIP for what is not compared (binary, nested).

    A calendar date compares as the day Exact shows (the warehouse holds a ``date``); text
    without Exact's fixed-width padding (the tap trims it, as Exact's screens do).
    """
    if value is None:
        return None
    if edm.startswith("Collection(") or not edm.startswith("Edm.") or edm == "Edm.Binary":
        return SKIP
    if isinstance(value, (dict, list)):
        return SKIP
    if edm == "Edm.DateTime" and calendar:
        if isinstance(value, dt.date):
            return dt.date(value.year, value.month, value.day)
        text = str(value)
        if text.startswith("/Date("):  # Amsterdam wall clock: its day is the date
            return dt.date(1970, 1, 1) + dt.timedelta(milliseconds=int(text[6:-2].split("+")[0]))
        return dt.date.fromisoformat(text[:10])
    if edm == "Edm.DateTime":
        if isinstance(value, dt.datetime):
            return _utc(value).replace(microsecond=value.microsecond // 1000 * 1000)
        if isinstance(value, dt.date):
            return _utc(dt.datetime(value.year, value.month, value.day))
        text = str(value)
        iso = parse_exact_datetime(text) if text.startswith("/Date(") else text
        if iso is None:
            return None
        parsed = dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
        return _utc(parsed).replace(microsecond=parsed.microsecond // 1000 * 1000)
    if edm == "Edm.Guid":
        return str(value).lower() if not isinstance(value, uuid.UUID) else str(value)
    if edm == "Edm.Boolean":
        return bool(value) if not isinstance(value, str) else value.lower() == "true"
    if edm in ("Edm.Double", "Edm.Decimal", "Edm.Single"):
        return round(float(value), 6)
    if edm in ("Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte"):
        return int(value) if not isinstance(value, Decimal) else int(value)
    return str(value).strip(" ")


def key_of(row: dict, key: tuple[str, ...]) -> tuple:
    return tuple(normalize(row.get(k), "Edm.Guid" if k == "ID" else "Edm.String") for k in key)


def diff_rows(stream: str, sandbox_rows: list[dict], warehouse_rows: list[dict], *, live_only: bool = True,
              max_report: int = 10) -> list[str]:
    """Differences between the sandbox's records and the warehouse's rows, field by field.

    Compares every field the sandbox has that the warehouse has a column for (and insists
    that the key fields are there). Warehouse rows with ``_sdc_deleted_at`` set are left
    out when ``live_only``.
    """
    ent = entity(stream)
    types = {f.name: f.edm for f in ent.fields}
    key = ent.key
    problems: list[str] = []
    wh = [r for r in warehouse_rows if not (live_only and r.get("_sdc_deleted_at") is not None)]
    columns = set(warehouse_rows[0]) if warehouse_rows else set()
    missing_keys = [k for k in key if warehouse_rows and k not in columns]
    if missing_keys:
        return [f"{stream}: key columns {missing_keys} missing from the warehouse table"]
    by_key_wh = {key_of(r, key): r for r in wh}
    if len(by_key_wh) != len(wh):
        problems.append(f"{stream}: {len(wh) - len(by_key_wh)} duplicate keys in the warehouse")
    by_key_sb = {key_of(r, key): r for r in sandbox_rows}
    only_sb = sorted(set(by_key_sb) - set(by_key_wh), key=repr)
    only_wh = sorted(set(by_key_wh) - set(by_key_sb), key=repr)
    if only_sb:
        problems.append(f"{stream}: {len(only_sb)} sandbox rows missing in the warehouse, e.g. {only_sb[:3]}")
    if only_wh:
        problems.append(f"{stream}: {len(only_wh)} warehouse rows not in the sandbox, e.g. {only_wh[:3]}")
    compared_fields = [f for f in types if f in columns]
    for k in sorted(set(by_key_sb) & set(by_key_wh), key=repr):
        s_row, w_row = by_key_sb[k], by_key_wh[k]
        for name in compared_fields:
            if name not in s_row:
                continue
            calendar = name in ent.calendar_dates
            a = normalize(s_row[name], types[name], calendar=calendar)
            b = normalize(w_row.get(name), types[name], calendar=calendar)
            if a is SKIP or b is SKIP or a == b:
                continue
            problems.append(f"{stream} {k}: {name}: sandbox {s_row[name]!r} != warehouse {w_row.get(name)!r}")
            if len(problems) >= max_report:
                return problems
    return problems


def compared_field_count(stream: str, sandbox_rows: list[dict], warehouse_columns: set[str]) -> int:
    types = {f.name for f in entity(stream).fields}
    sample = sandbox_rows[0] if sandbox_rows else {}
    return len([f for f in types if f in warehouse_columns and f in sample])


# sync/Deleted EntityType -> stream (REFERENCE.md §6)
ENTITY_STREAMS = {1: "transaction_lines", 2: "accounts", 7: "gl_accounts"}


def table_by_key(warehouse, stream: str) -> dict[tuple, dict]:
    """The whole table by primary key (key values as text)."""
    key = entity(stream).key
    return {tuple(str(row[k]).lower() for k in key): row for row in warehouse.rows(stream)}


def without_sdc(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_sdc_")}


def some_ids(exact, division: int, stream: str, count: int, *, skip: int = 0) -> list:
    """``count`` of the stream's IDs in the sandbox, from the ``skip``-th on."""
    return [row["ID"] for row in exact.records(division, records_path(stream))[skip:skip + count]]


def delete_in_exact(exact, division: int, stream: str, ids: list) -> dict[str, set[tuple]]:
    """Delete these rows in the sandbox; returns every key it logged as deleted (cascades included),
    per stream, as table_by_key's keys."""
    gone: dict[str, set[tuple]] = {}
    for ident in ids:
        for entry in exact.delete(division, records_path(stream), ident)["deleted"]:
            name = ENTITY_STREAMS.get(entry["EntityType"])
            if name:
                gone.setdefault(name, set()).add((str(entry["EntityKey"]).lower(), str(division)))
    assert gone.get(stream), f"deleting {stream} logged nothing"
    return gone


def merge_gone(*parts: dict[str, set[tuple]]) -> dict[str, set[tuple]]:
    merged: dict[str, set[tuple]] = {}
    for part in parts:
        for stream, keys in part.items():
            merged.setdefault(stream, set()).update(keys)
    return merged
