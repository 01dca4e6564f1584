"""Responses as Exact writes them: OData error JSON, the login redirect page, JSON bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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
