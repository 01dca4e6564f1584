"""OData v2 as Exact speaks it: literals, filters within the URL limit, envelopes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec

from exactonline_api.timeutil import filter_datetime

# Exact refuses URLs longer than 6,000 characters (REST API restrictions page).
MAX_URL_LENGTH = 6000
# Characters left unescaped in query options: Exact (WCF) reads ``+`` literally, so spaces
# must be %20, and it wants OData's quotes, parentheses and ``$`` as they are.
QUERY_SAFE = "$'(),/:=*"
# The Edm types that are JSON integers and numbers (Exact may still send them as strings).
INTEGER_EDM = frozenset({"Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte", "Edm.SByte"})
NUMBER_EDM = frozenset({"Edm.Double", "Edm.Decimal", "Edm.Single"})


def query_string(params: Mapping[str, str]) -> str:
    """OData options with spaces as %20 and quotes kept; empty options left out."""
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe=QUERY_SAFE)}" for k, v in params.items() if v)


def quote_value(text: str) -> str:
    """One option value, escaped as :func:`query_string` escapes it."""
    return quote(text, safe=QUERY_SAFE)


def string_literal(value: str) -> str:
    """``O'Brien`` -> ``'O''Brien'``: OData doubles single quotes inside strings."""
    return "'" + value.replace("'", "''") + "'"


def literal(value: Any, edm: str) -> str:
    """A Python value -> the OData literal Exact expects for that Edm type."""
    if value is None:
        return "null"
    if edm == "Edm.Guid":
        return f"guid'{uuid.UUID(str(value))}'"
    if edm == "Edm.DateTime":
        if not isinstance(value, datetime):
            raise TypeError("DateTime filters need an aware datetime")
        return filter_datetime(value)
    if edm == "Edm.Int64":
        return f"{int(value)}L"
    if edm in INTEGER_EDM:
        return str(int(value))
    if edm in NUMBER_EDM:
        return repr(float(value))
    if edm == "Edm.Boolean":
        return "true" if value else "false"
    return string_literal(str(value))


def equals_clause(fields: dict[str, str], values: dict[str, object]) -> str:
    """One record's natural key -> ``(Code eq '1' and Name eq 'x')``."""
    parts = [f"{name} eq {literal(values[name], edm)}" for name, edm in fields.items()]
    return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"


def encoded_length(text: str) -> int:
    return len(quote_value(text))


def batch_or_filters(clauses: Iterable[str], budget: int) -> Iterator[tuple[str, list[int]]]:
    """Join clauses with ``or`` into filters whose encoded length fits ``budget``.

    Yields each filter with the indexes of the clauses it holds, so a caller
    can map results back. ``budget`` is what is left of the URL limit after the
    base URL and the other query options.
    """
    current: list[str] = []
    indexes: list[int] = []
    size = 0
    joiner = encoded_length(" or ")
    for index, clause in enumerate(clauses):
        length = encoded_length(clause)
        if length > budget:
            raise ValueError(f"one key alone is longer than the URL limit ({length} > {budget} characters)")
        if current and size + joiner + length > budget:
            yield " or ".join(current), indexes
            current, indexes, size = [], [], 0
        size += length + (joiner if current else 0)
        current.append(clause)
        indexes.append(index)
    if current:
        yield " or ".join(current), indexes


def results(payload: object) -> list[dict]:
    """Rows of a collection (``{"d": {"results": [...]}}`` or ``{"d": [...]}``)."""
    if not isinstance(payload, dict) or "d" not in payload:
        raise ValueError("not an OData envelope: the body has no 'd' member")
    body = payload["d"]
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        rows = body.get("results")
        if isinstance(rows, list):
            return rows
        return [body]
    raise ValueError("not an OData envelope: 'd' is neither a list nor an object")


def next_link(payload: Any) -> str | None:
    """The absolute ``__next`` URL, present only while more pages exist.

    ``payload`` is a decoded envelope, or a typed one (a msgspec Struct with ``d.next``)."""
    if isinstance(payload, msgspec.Struct):
        return getattr(getattr(payload, "d", None), "next", None) or None
    if isinstance(payload, dict):
        body = payload.get("d")
        if isinstance(body, dict):
            link = body.get("__next")
            return link or None
    return None


def error_message(payload: object) -> str | None:
    """Exact's ``{"error": {"message": {"value": ...}}}`` -> the message text."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, dict):
            return str(message.get("value") or "") or None
        if isinstance(message, str):
            return message
        description = payload.get("error_description")
        return str(description) if description else None
    if isinstance(error, str):
        return str(payload.get("error_description") or error)
    return None
