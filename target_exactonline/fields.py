"""Record values -> Exact values, and the normal form used to compare them.

Three jobs, all driven by the Edm type of the Exact field:

* :func:`to_wire` turns what a tap sends (CSV text, JSON numbers, ISO dates, ...) into the JSON value
  Exact accepts in a POST/PUT body, or raises :class:`BadValue` with a reason fit for the reject file;
* :func:`comparable` turns both that value and what Exact answers on a GET (``/Date(ms)/``, Int64 as a
  string, padded codes, GUIDs in any case) into one normal form, so that :func:`same` can tell
  "unchanged" from "changed" without calling Exact;
* :func:`key_part` is the normal form for matching natural keys; string keys ignore case and
  surrounding blanks, as Exact's filters do (SQL Server collation, codes left-padded to 18 characters).

Dates: Exact's ``/Date(ms)/`` is Amsterdam wall-clock time written as if it were UTC
(:mod:`exactonline_api.timeutil`). Values are compared as naive Amsterdam wall-clock datetimes:
an aware input is converted to Amsterdam time, a naive input (``2024-01-31``, ``2024-01-31T10:00``)
is taken to be Amsterdam time already, which is what a person typing a date in a CSV means.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from exactonline_api.odata import INTEGER_EDM as INTEGER
from exactonline_api.odata import NUMBER_EDM as NUMBER
from exactonline_api.timeutil import to_exact_local

_TRUE = frozenset({"true", "t", "1", "yes", "y", "ja", "j"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "nee"})
_MS_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1)
_SQUASH = re.compile(r"[^0-9a-z]")


class BadValue(ValueError):
    """A value that cannot become the Edm type of its field; the text is the reason (no long values)."""


def squash(name: str) -> str:
    """``first_name``, ``FirstName``, ``First Name`` -> ``firstname`` (how CSV headers meet Exact names)."""
    return _SQUASH.sub("", name.lower())


def shown(value: Any, limit: int = 40) -> str:
    """A value for a reason text: short, never a whole base64 blob."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


# -- record value -> Exact JSON value ----------------------------------------------------------------


def to_wire(edm: str, value: Any, *, calendar: bool = False) -> Any:
    """The JSON value for a POST/PUT body; ``None`` for empty input of a non-text type.

    A calendar date (``calendar``) is written as midnight of its local day, whether the input is
    ``2023-01-01`` (the tap's form) or a date-time such as ``2022-12-31T23:00:00+00:00`` (an older
    warehouse's UTC instant of that midnight): Exact shows both as 1 January.
    """
    if value is None:
        return None
    if edm == "Edm.String":
        if isinstance(value, (dict, list)):
            raise BadValue(f"is {type(value).__name__}, not text")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    if is_empty(value):
        return None
    if edm == "Edm.Guid":
        try:
            return str(uuid.UUID(str(value).strip()))
        except ValueError:
            raise BadValue(f"{shown(value)} is not a GUID") from None
    if edm in INTEGER:
        return _integer(value)
    if edm in NUMBER:
        return _number(value)
    if edm == "Edm.Boolean":
        return _boolean(value)
    if edm == "Edm.DateTime":
        moment = local_datetime(value)
        return _wire_datetime(datetime(moment.year, moment.month, moment.day) if calendar else moment)
    if edm == "Edm.Binary":
        return clean_base64(value)[0]
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip()) if not isinstance(value, float) else value
    except ValueError:
        raise BadValue(f"{shown(value)} is not a whole number") from None
    if not math.isfinite(number) or not number.is_integer():
        raise BadValue(f"{shown(value)} is not a whole number")
    return int(number)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise BadValue(f"{shown(value)} is not a number")
    try:
        number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
    except ValueError:
        raise BadValue(f"{shown(value)} is not a number (use a dot for decimals)") from None
    if not math.isfinite(number):
        raise BadValue(f"{shown(value)} is not a finite number")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadValue(f"{shown(value)} is not true or false")


def local_datetime(value: Any) -> datetime:
    """Any date-ish input -> naive Amsterdam wall-clock time, to the millisecond."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        match = _MS_DATE.match(text)
        if match:
            return _EPOCH + timedelta(milliseconds=int(match.group(1)))
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadValue(f"{shown(value)} is not an ISO 8601 date or date-time") from None
    else:
        raise BadValue(f"{shown(value)} is not a date")
    if moment.tzinfo is not None:
        moment = to_exact_local(moment)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _wire_datetime(moment: datetime) -> str:
    # Exact reads ISO strings without an offset as its own (Amsterdam) time.
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if moment.microsecond else text


_DATA_URI = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def clean_base64(value: Any) -> tuple[str, int]:
    """Validated base64 text (data: prefix and line breaks removed) and its decoded size in bytes."""
    if not isinstance(value, str):
        raise BadValue("is not base64 text")
    text = _WHITESPACE.sub("", _DATA_URI.sub("", value.strip()))
    if not text:
        raise BadValue("is empty (no base64 content)")
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadValue("is not valid base64") from None
    return text, len(decoded)


# -- the normal form for comparisons -------------------------------------------------------------------


def comparable(edm: str, value: Any) -> Any:
    """One normal form for a value from a record or from Exact's answer (``None`` = empty)."""
    if is_empty(value):
        return None
    try:
        if edm == "Edm.String":
            return str(value).strip() or None
        if edm == "Edm.Guid":
            return str(uuid.UUID(str(value).strip()))
        if edm in INTEGER:
            return _integer(value)
        if edm in NUMBER:
            return _number(value)
        if edm == "Edm.Boolean":
            return _boolean(value)
        if edm == "Edm.DateTime":
            return local_datetime(value)
    except BadValue:
        return value  # an odd value from Exact: compare it as it is (it will differ, and be rewritten)
    return value


def same(edm: str, left: Any, right: Any) -> bool:
    a, b = comparable(edm, left), comparable(edm, right)
    if edm in NUMBER and isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def key_part(edm: str, value: Any) -> Any:
    """Normal form of one natural-key value: strings ignore case and surrounding blanks."""
    normal = comparable(edm, value)
    return normal.casefold() if isinstance(normal, str) else normal
