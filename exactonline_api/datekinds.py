"""Which ``Edm.DateTime`` properties are calendar dates and which are moments.

Exact has one wire type for both. A calendar date (an invoice date, a due
date, a birth date) is what a person picks on a calendar: Exact stores it as
midnight of that day in Dutch wall-clock time, and it must reach the warehouse
as that same day (``2023-01-01``), never as the UTC instant of that midnight
(``2022-12-31T23:00Z``, the previous year). A moment (``Created``,
``Modified``, a start time) is an instant and stays UTC ISO 8601.

The class of a property is decided by a rule on its name plus a reviewed list
of exceptions, so the decision is data: ``data/datetime_kinds.tsv`` is the
rule applied to every stream, shipped for review (regenerate it with
``python -m exactonline_api.datekinds``; a test fails while it is stale, so a
change of the rule shows as a diff of that file). A user overrides single
properties with the tap setting ``date_fields``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping

from exactonline_api.errors import ConfigError

DATE, MOMENT = "date", "moment"
KINDS = (DATE, MOMENT)

# Date-ranges named without the word: subscription.InvoicedTo, price lists' ValidFrom/ValidTo,
# purchase entry lines' From/To.
_DATE_NAMES = frozenset({"From", "To", "ValidFrom", "ValidTo", "InvoicedTo"})
_DATE_WORD = re.compile(r"Date")  # case matters: LastUpDATEd is a moment

# Reviewed exceptions to the rule, with the reason. A name with "Date" that records when
# something happened (a log, an audit or a workflow event) is a moment: its time of day is
# part of the fact, and Exact fills it from the clock, not from a calendar picker.
EXCEPTIONS: dict[str, tuple[str, str]] = {
    "DeletedDate": (MOMENT, "sync/Deleted log entry: when the row was deleted"),
    "CreatedDate": (MOMENT, "audit field, like Created"),
    "ModifiedDate": (MOMENT, "audit field, like Modified"),
    "DivisionMoveDate": (MOMENT, "when Exact moved the division (compared as an instant by resyncs)"),
    "DivisionHRLinkUnlinkDate": (MOMENT, "when the HR division was linked or unlinked"),
    "SenderDateSent": (MOMENT, "when the mail message was sent"),
    "DateLastUsed": (MOMENT, "usage stamp set by the clock"),
    "ApprovedDate": (MOMENT, "expense report workflow event"),
    "RejectedDate": (MOMENT, "expense report workflow event"),
    "SubmittedDate": (MOMENT, "expense report workflow event"),
    "NextAction": (DATE, "complaint's planned next-action day, picked on a calendar"),
}


def rule(name: str) -> tuple[str, str]:
    """The kind of a property by name, and why: exceptions first, then the name rule."""
    if name in EXCEPTIONS:
        kind, why = EXCEPTIONS[name]
        return kind, f"exception: {why}"
    if name.endswith("Time"):
        return MOMENT, "rule: *Time is a moment"
    if name in _DATE_NAMES or _DATE_WORD.search(name):
        return DATE, "rule: named as a date"
    return MOMENT, "rule: other names (Created, Modified, LastUpdated, ...) are moments"


def is_calendar_date(name: str) -> bool:
    return rule(name)[0] == DATE


def calendar_fields(stream: str, fields: Iterable[tuple[str, str]],
                    overrides: Mapping[str, Mapping[str, str]] | None = None) -> frozenset[str]:
    """Names of the calendar-date properties among ``(name, edm)`` of one stream."""
    mine = (overrides or {}).get(stream)
    mine = mine if isinstance(mine, Mapping) else {}
    chosen = set()
    for name, edm in fields:
        if edm != "Edm.DateTime":
            continue
        kind = mine.get(name) or rule(name)[0]
        if kind == DATE:
            chosen.add(name)
    return frozenset(chosen)


EXAMPLE = '{"sales_invoices": {"DueDate": "moment"}}'


def check_overrides(overrides: object, datetime_fields: Mapping[str, set[str]]) -> None:
    """The ``date_fields`` setting, ``{stream: {Field: "date"|"moment"}}``, checked: one line per mistake.

    Nested rather than ``"stream.Field"`` keys: Meltano reads dots in an object's keys as nesting.
    """
    if overrides is None:
        return
    if not isinstance(overrides, dict):
        raise ConfigError(f"date_fields must be an object like {EXAMPLE}")
    for stream, kinds in overrides.items():
        if stream not in datetime_fields:
            raise ConfigError(f"date_fields: no stream {stream!r} (write it like {EXAMPLE})")
        if not isinstance(kinds, dict):
            raise ConfigError(f"date_fields.{stream} must be an object of Field: 'date' or 'moment', like {EXAMPLE}")
        for name, kind in kinds.items():
            if name not in datetime_fields[stream]:
                raise ConfigError(f"date_fields.{stream}.{name}: {stream} has no Edm.DateTime property {name!r}")
            if kind not in KINDS:
                raise ConfigError(f"date_fields.{stream}.{name}: {kind!r} is not 'date' or 'moment'")


def datetime_fields() -> dict[str, set[str]]:
    """Every stream's Edm.DateTime property names (what ``date_fields`` may name)."""
    from exactonline_api.registry import entities

    return {stream: {f.name for f in entity.fields if f.edm == "Edm.DateTime"}
            for stream, entity in entities().items()}


def table() -> str:
    """The rule applied to every stream: ``stream, field, kind, reason`` as TSV (the shipped file)."""
    from exactonline_api.registry import entities

    lines = ["stream\tfield\tkind\treason"]
    for stream, entity in entities().items():
        for fld in entity.fields:
            if fld.edm == "Edm.DateTime":
                kind, why = rule(fld.name)
                lines.append(f"{stream}\t{fld.name}\t{kind}\t{why}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
