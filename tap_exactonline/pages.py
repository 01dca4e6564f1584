"""Pages decoded straight into typed rows of the selected fields.

A generic JSON decode builds a dict per row, including Exact's ``__metadata``
object, and then every numeric field is checked for Exact's habit of sending
numbers as strings. Decoding into a msgspec Struct of exactly the selected
fields skips ``__metadata`` without building it, casts numeric strings in C
(lax mode) and leaves only the dates to convert. The Struct is encoded as is.
Exact's other shapes fit too: whole doubles as JSON integers (msgspec takes
them as floats), escaped slashes, and the bare ``{"d": [...]}`` of function
endpoints (a union with the paged envelope). Padding is trimmed from the raw
bytes before decoding (:func:`tap_exactonline.schema.trim_padding`).

A page of another shape (a value Exact sent with an unexpected type, say) does
not fit the Struct; the caller then reads it the generic way, so one odd value
costs speed, never a record.
"""

from __future__ import annotations

import typing as t

import msgspec

from exactonline_api import odata
from exactonline_api.registry import Entity
from exactonline_api.timeutil import date_literal_to_iso, parse_exact_datetime
from tap_exactonline.schema import INTEGER_EDM, NUMBER_EDM, OffMidnight, convert_calendar, trim_padding


def _python_type(edm: str) -> t.Any:
    if edm in INTEGER_EDM:
        return t.Optional[int]
    if edm in NUMBER_EDM:
        return t.Optional[float]
    if edm == "Edm.Boolean":
        return t.Optional[bool]
    return t.Optional[str]


class TypedRows:
    """Decoder and converter for one stream's selected fields."""

    def __init__(self, entity: Entity, fields: list[str], *, trim: bool = True,
                 warn: OffMidnight | None = None) -> None:
        edm = {f.name: f.edm for f in entity.fields}
        self.row_type = msgspec.defstruct(
            f"{entity.stream_name}_row", [(name, _python_type(edm[name]), None) for name in fields])
        body = msgspec.defstruct("Body", [
            ("results", list[self.row_type]),  # type: ignore[valid-type]
            ("next", t.Optional[str], msgspec.field(name="__next", default=None)),
        ])
        bare: t.Any = list[self.row_type]  # type: ignore[valid-type,name-defined]
        envelope = msgspec.defstruct("Envelope", [("d", t.Union[body, bare])])
        self._decoder = msgspec.json.Decoder(envelope, strict=False)
        self._trim = trim
        calendar = entity.calendar_dates
        self._dates = tuple(name for name in fields if edm[name] == "Edm.DateTime" and name not in calendar)
        self._days = tuple(name for name in fields if name in calendar)
        self._warn = warn or OffMidnight(entity.stream_name)

    def decode(self, content: bytes) -> t.Any:
        """The page as typed rows; ``msgspec.ValidationError`` when it does not fit."""
        return self._decoder.decode(trim_padding(content) if self._trim else content)

    def convert(self, row: t.Any, division: int) -> t.Any:
        for name in self._dates:
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, date_literal_to_iso(value) if value[:6] == "/Date(" else parse_exact_datetime(value))
        for name in self._days:
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, convert_calendar(value, name, self._warn))
        if row.Division is None:
            row.Division = division
        return row


def rows(payload: t.Any) -> list:
    if isinstance(payload, msgspec.Struct):
        body = t.cast(t.Any, payload).d
        return body if body.__class__ is list else body.results
    return odata.results(payload)
