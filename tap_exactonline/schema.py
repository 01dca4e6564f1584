"""JSON Schema from Edm types, and the per-record conversion (the hot path).

Values land as the user sees them in Exact: calendar dates as the local day
(``format: date``, see :mod:`exactonline_api.datekinds`), moments as UTC ISO
8601, and fixed-width text without the blanks Exact pads it with (its own
screens show ``NL``, not ``NL `` nor an account code right-aligned in 18
characters). ``trim_text: false`` keeps the raw text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

from exactonline_api.odata import INTEGER_EDM, NUMBER_EDM
from exactonline_api.registry import Entity
from exactonline_api.timeutil import calendar_date, date_literal_to_iso, parse_exact_datetime

LOG = logging.getLogger("tap_exactonline")


def json_type(edm: str, *, calendar: bool = False) -> dict:
    if edm in INTEGER_EDM:
        return {"type": ["integer", "null"]}
    if edm in NUMBER_EDM:
        return {"type": ["number", "null"]}
    if edm == "Edm.Boolean":
        return {"type": ["boolean", "null"]}
    if edm == "Edm.DateTime":
        return {"type": ["string", "null"], "format": "date" if calendar else "date-time"}
    if edm == "Edm.Guid":
        return {"type": ["string", "null"], "format": "uuid"}
    if edm == "Edm.Binary":
        return {"type": ["string", "null"], "contentEncoding": "base64"}
    return {"type": ["string", "null"]}


def build_schema(entity: Entity, *, tombstones: bool) -> dict:
    properties: dict[str, dict] = {}
    for field in entity.fields:
        prop = json_type(field.edm, calendar=field.name in entity.calendar_dates)
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


# Padding is trimmed from a page's bytes before decoding: two C-level passes cost about
# what the decode itself costs, where a strip() per string value would cost a tenth of
# the tap's time. In compact JSON (Exact's), ':"' followed by blanks can only open a
# value (a quote inside text is escaped, so it follows a backslash), and blanks before
# a quote can only end a string: a quote inside text is preceded by its backslash.
_LEADING = re.compile(rb':"  *')
_TRAILING = re.compile(rb'  *"')


def trim_padding(content: bytes) -> bytes:
    """A page's JSON with every string value's leading and trailing blanks removed."""
    return _TRAILING.sub(b'"', _LEADING.sub(b':"', content))


class OffMidnight:
    """One warning per field of a stream for a calendar date that is not local midnight."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.reported: set[str] = set()

    def __call__(self, name: str, raw: object, day: str | None) -> None:
        if name not in self.reported:
            self.reported.add(name)
            LOG.warning("%s.%s is a calendar date but Exact sent %s, not midnight in Exact's time zone: "
                        "kept its local date %s (further such values of this field are not reported; "
                        "set date_fields {\"%s.%s\": \"moment\"} to keep the time)",
                        self.stream, name, raw, day, self.stream, name)


def convert_calendar(value: object, name: str, warn: OffMidnight) -> str | None:
    """A calendar-date value from Exact -> ``YYYY-MM-DD`` (its local day)."""
    if value.__class__ is not str:
        return None
    day, timed = calendar_date(value)
    if timed:
        warn(name, value, day)
    return day


def record_converter(entity: Entity, keep: Iterable[str], *, trim: bool = True,
                     warn: OffMidnight | None = None) -> Callable[[dict, int], dict]:
    """A function that turns one Exact row into a Singer record, in place.

    ``keep`` names the properties the record may carry (the selected ones);
    anything else Exact sends (``__metadata``, expanded collections, fields
    newer than our metadata) is dropped. The field lists are resolved once per
    stream so that each record costs a few dict operations per converted field.
    """
    kept = frozenset(keep)
    fields = [f for f in entity.fields if f.name in kept]
    dates = tuple(f.name for f in fields if f.edm == "Edm.DateTime" and f.name not in entity.calendar_dates)
    days = tuple(f.name for f in fields if f.name in entity.calendar_dates)
    texts = tuple(f.name for f in fields if f.edm == "Edm.String") if trim else ()
    warn = warn or OffMidnight(entity.stream_name)
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
        for name in days:
            value = row.get(name)
            if value is not None:
                row[name] = convert_calendar(value, name, warn)
        for name in texts:
            value = row.get(name)
            if value.__class__ is str and (value[:1] == " " or value[-1:] == " "):
                row[name] = value.strip(" ")
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
