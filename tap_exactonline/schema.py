"""JSON Schema from Edm types, and the per-record conversion (the hot path)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from exactonline_api.odata import INTEGER_EDM, NUMBER_EDM
from exactonline_api.registry import Entity
from exactonline_api.timeutil import date_literal_to_iso, parse_exact_datetime

__all__ = ["INTEGER_EDM", "NUMBER_EDM", "build_schema", "json_type", "record_converter"]


def json_type(edm: str) -> dict:
    if edm in INTEGER_EDM:
        return {"type": ["integer", "null"]}
    if edm in NUMBER_EDM:
        return {"type": ["number", "null"]}
    if edm == "Edm.Boolean":
        return {"type": ["boolean", "null"]}
    if edm == "Edm.DateTime":
        return {"type": ["string", "null"], "format": "date-time"}
    if edm == "Edm.Guid":
        return {"type": ["string", "null"], "format": "uuid"}
    if edm == "Edm.Binary":
        return {"type": ["string", "null"], "contentEncoding": "base64"}
    return {"type": ["string", "null"]}


def build_schema(entity: Entity, *, tombstones: bool) -> dict:
    properties: dict[str, dict] = {}
    for field in entity.fields:
        prop = json_type(field.edm)
        if field.name in entity.key:
            prop["type"] = prop["type"][0]  # keys are never null
        if field.description:
            prop["description"] = field.description
        properties[field.name] = prop
    if tombstones:
        properties["_sdc_deleted_at"] = {
            "type": ["string", "null"], "format": "date-time",
            "description": "Set on records deleted in Exact (from sync/Deleted, UTC)",
        }
    return {"type": "object", "properties": properties, "required": list(entity.key)}


def _to_int(value: object) -> object:
    # Exact (WCF) writes Int64 as a JSON string; other ints may be strings too.
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return int(float(value))
    return value


def _to_float(value: object) -> object:
    return float(value) if isinstance(value, str) else value


def record_converter(entity: Entity, keep: Iterable[str]) -> Callable[[dict, int], dict]:
    """A function that turns one Exact row into a Singer record, in place.

    ``keep`` names the properties the record may carry (the selected ones);
    anything else Exact sends (``__metadata``, expanded collections, fields
    newer than our metadata) is dropped. The field lists are resolved once per
    stream so that each record costs a few dict operations per converted field.
    """
    kept = frozenset(keep)
    fields = [f for f in entity.fields if f.name in kept]
    dates = tuple(f.name for f in fields if f.edm == "Edm.DateTime")
    ints = tuple(f.name for f in fields if f.edm in INTEGER_EDM)
    floats = tuple(f.name for f in fields if f.edm in NUMBER_EDM)

    def convert(row: dict, division: int) -> dict:
        if "_sdc_deleted_at" in row:
            return row  # tombstones are built by the tap, already in Singer form
        row.pop("__metadata", None)
        for name in dates:
            value = row.get(name)
            if value is not None:
                # The common "/Date(ms)/" goes straight to the cached literal converter.
                row[name] = (date_literal_to_iso(value) if value.__class__ is str and value[:6] == "/Date("
                             else parse_exact_datetime(value))
        for name in ints:
            value = row.get(name)
            if value.__class__ is str:
                row[name] = _to_int(value)
        for name in floats:
            value = row.get(name)
            if value.__class__ is str:
                row[name] = _to_float(value)
        if row.get("Division") is None:
            row["Division"] = division
        if not row.keys() <= kept:  # a C-level check; the loop only runs for odd rows
            for name in [name for name in row if name not in kept]:
                del row[name]
        return row

    return convert
