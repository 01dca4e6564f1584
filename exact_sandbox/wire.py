"""Responses as Exact writes them: OData error JSON, the login redirect page, JSON bodies.

Value shapes of real answers (REFERENCE.md 14.4) are applied here, at the
wire, each behind a knob and on by default: whole doubles as JSON integers,
fixed-width text padded with blanks, escaped slashes, calendar dates at local
midnight (the stored form; ``calendar_date_time`` moves them off it). The
stored rows stay plain, so ``$filter`` compares them as SQL Server compares
char columns: trailing blanks never matter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False  # close the connection without answering (a fault)
    rows: int = 0  # records served, for the request log


class ApiError(Exception):
    """Raised anywhere below the router; carries the finished response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def api_body(value: object, knobs: Any) -> bytes:
    """An API answer's JSON; WCF writes every slash escaped (``"\\/Date(...)\\/"``)."""
    body = dumps(value)
    return body.replace(b"/", b"\\/") if knobs.escape_slashes else body


DOUBLE_TYPES = frozenset({"Edm.Double", "Edm.Decimal", "Edm.Single"})
# char(n) columns seen padded in captured answers: "NL ", "UT ", "NL        ", "ALBEX    ", "02 ".
_WIDTHS = {"Country": 3, "State": 3, "Language": 10, "SearchCode": 9}
_DAY_MS = 86_400_000
# Moments: never moved by calendar_date_time (their time of day is real).
_MOMENTS = frozenset({"Created", "Modified", "DeletedDate", "DivisionMoveDate", "ServerTime"})


def fixed_width(name: str, edm: str) -> int:
    if edm != "Edm.String":
        return 0
    return _WIDTHS.get(name) or (3 if name.lower().endswith("vatcode") else 0)


def _time_of_day_ms(text: str) -> int:
    hours, _, minutes = text.partition(":")
    return (int(hours) * 60 + int(minutes or 0)) * 60_000


class ValueShapes:
    """The per-field reshaping of one rendered row, resolved once per endpoint and selection."""

    def __init__(self, types: dict[str, str], knobs: Any) -> None:
        self.whole = [n for n, t in types.items() if t in DOUBLE_TYPES] if knobs.whole_doubles_as_integers else []
        self.padded = [(n, w) for n, t in types.items() if (w := fixed_width(n, t))] if knobs.pad_fixed_width else []
        self.shift = _time_of_day_ms(knobs.calendar_date_time) if knobs.calendar_date_time else 0
        self.dates = [n for n, t in types.items() if t == "Edm.DateTime" and n not in _MOMENTS] if self.shift else []
        self.active = bool(self.whole or self.padded or self.dates)

    def apply(self, out: dict[str, Any]) -> None:
        for name in self.whole:
            value = out[name]
            if value.__class__ is float and value.is_integer():
                out[name] = int(value)
        for name, width in self.padded:
            value = out[name]
            if value.__class__ is str:
                out[name] = value.ljust(width)
        for name in self.dates:
            value = out[name]
            if value.__class__ is str and value.startswith("/Date("):
                local_ms = int(value[6:-2])
                if local_ms % _DAY_MS == 0:
                    out[name] = f"/Date({local_ms + self.shift})/"


def json_response(status: int, value: object, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, dumps(value), JSON_TYPE, list(headers or []))


def exact_error(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """``{"error":{"code":"","message":{"lang":"","value":...}}}``: Exact's (WCF's) error body."""
    return json_response(status, {"error": {"code": "", "message": {"lang": "", "value": message}}}, headers)


def fail(status: int, message: str) -> ApiError:
    return ApiError(exact_error(status, message))


def html_response(status: int, html: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, html.encode(), "text/html; charset=utf-8", list(headers or []))


def object_moved(path: str) -> Response:
    """What Exact answers an API call with a missing, expired or unknown bearer token."""
    from urllib.parse import quote

    target = "/docs/Login.aspx?ReturnUrl=" + quote(path, safe="").lower()
    html = ("<html><head><title>Object moved</title></head><body>\r\n"
            f'<h2>Object moved to <a href="{target}">here</a>.</h2>\r\n</body></html>\r\n')
    return html_response(401, html)


def oauth_error(status: int, error: str, description: str | None = None, reason: str | None = None) -> Response:
    body = {"error": error}
    if description:
        body["error_description"] = description
    headers = [("Reason", reason)] if reason else []
    headers.append(("Cache-Control", "no-store"))
    return json_response(status, body, headers)
