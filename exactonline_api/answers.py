"""What an answer from Exact means, in one place for the tap and the target.

* A **refusal** is an answer Exact gave on purpose: any 4xx, or a 500 that carries Exact's JSON
  error object with a message. Exact refuses writes that break a business rule with HTTP 500 and
  its message ("Gegeven bestaat reeds.", "Verplicht: Serie"); sending the same request again gets
  the same answer. A refusal is final: no retry, no lookup for a lost answer.
* An **unknown outcome** is a 5xx without that object (Exact's maintenance and gateway pages are
  HTML or empty), a timeout or a dropped connection: the request may or may not have taken effect.
  GETs are retried; writes are looked up before any retry (the target does that).

401/403 answers carry a ``Reason`` header; :func:`reason_advice` turns it into what to do.
"""

from __future__ import annotations

import msgspec

from exactonline_api.errors import AUTH_COMMAND
from exactonline_api.odata import error_message

# Exact counts these toward its hourly error limit per endpoint (10, then an hour's block).
COUNTED_STATUSES = frozenset({400, 401, 403, 404})
_SCOPE_HINT = "scope violated"


def exact_message(body: bytes) -> str | None:
    """The message of Exact's ``{"error": {"message": {"value": ...}}}`` body; None for anything else."""
    if not body or not body.lstrip().startswith(b"{"):
        return None
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    message = error_message(payload)
    return message.strip() or None if message else None


def is_refusal(status: int, body: bytes) -> bool:
    """A final answer: 4xx, or 5xx with Exact's own error message (see the module docstring)."""
    if 400 <= status < 500:
        return True
    return status >= 500 and exact_message(body) is not None


def reason_advice(reason: str, message: str, *, division: int | None, endpoint: str, method: str) -> str:
    """One actionable sentence for a 401/403, from Exact's ``Reason`` header (and message)."""
    key = reason.replace(" ", "").casefold()
    where = f"division {division}" if division is not None else "this connection"
    if key == "nodivisionaccess":
        return (f"division {division} is not granted to this app: run `{AUTH_COMMAND}` again and tick it "
                "on Exact's consent screen")
    if _SCOPE_HINT in reason.casefold() or _SCOPE_HINT in message.casefold():
        access = "read" if method in ("GET", "HEAD") else "manage"
        return (f"the app's scopes do not cover {endpoint} ({access}): enable that scope for the app in "
                f"Exact's App Center, then run `{AUTH_COMMAND}` again")
    advice = {
        "blockeduser": "the Exact user of this connection is blocked: ask your Exact administrator to unblock it",
        "inactiveuser": "the Exact user of this connection is inactive: ask your Exact administrator to "
                        f"activate it, or run `{AUTH_COMMAND}` as an active user",
        "blockedcustomer": "Exact blocked this customer's licence: contact Exact support",
        "licenseexpired": "the Exact licence has expired: renew it in Exact Online",
        "divisionblocked": f"{where} is blocked in Exact: unblock it in Exact Online or remove it from "
                           "`divisions`",
    }.get(key)
    if advice:
        return advice
    if reason:
        return f"Exact refused it with Reason {reason!r}: {message}"
    return message
