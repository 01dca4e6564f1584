"""Pages decoded straight into typed rows of the selected fields.

A generic JSON decode builds a dict per row, including Exact's ``__metadata``
object, and then every numeric field is checked for Exact's habit of sending
numbers as strings. Decoding into a msgspec Struct of exactly the selected
fields skips ``__metadata`` without building it, casts numeric strings in C
(lax mode) and leaves only the dates to convert. The Struct is encoded as is.

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
from tap_exactonline.schema import INTEGER_EDM, NUMBER_EDM


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

    def __init__(self, entity: Entity, fields: list[str]) -> None:
        edm = {f.name: f.edm for f in entity.fields}
        self.row_type = msgspec.defstruct(
            f"{entity.stream_name}_row", [(name, _python_type(edm[name]), None) for name in fields])
        body = msgspec.defstruct("Body", [
            ("results", list[self.row_type]),  # type: ignore[valid-type]
            ("next", t.Optional[str], msgspec.field(name="__next", default=None)),
        ])
        envelope = msgspec.defstruct("Envelope", [("d", body)])
        self._decoder = msgspec.json.Decoder(envelope, strict=False)
        self._dates = tuple(name for name in fields if edm[name] == "Edm.DateTime")

    def decode(self, content: bytes) -> t.Any:
        """The page as typed rows; ``msgspec.ValidationError`` when it does not fit."""
        return self._decoder.decode(content)

    def convert(self, row: t.Any, division: int) -> t.Any:
        for name in self._dates:
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, date_literal_to_iso(value) if value[:6] == "/Date(" else parse_exact_datetime(value))
        if row.Division is None:
            row.Division = division
        return row


def rows(payload: t.Any) -> list:
    return payload.d.results if isinstance(payload, msgspec.Struct) else odata.results(payload)


def next_link(payload: t.Any) -> str | None:
    return (payload.d.next or None) if isinstance(payload, msgspec.Struct) else odata.next_link(payload)

