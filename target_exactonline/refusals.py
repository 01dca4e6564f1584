"""Exact's refusals in one run, judged in one place for every upserter.

* A refusal of one record (a 400, or a 500 with Exact's message such as ``Gegeven bestaat reeds.``)
  rejects that record with Exact's message verbatim; the ledger remembers its fingerprint so a
  later run does not send it again until it changes. The run goes on with the other records.
* A 401/403 is about the connection, not the record: the rest of that division (``Reason`` such
  as ``NoDivisionAccess``, or no reason at all) or of that endpoint (a missing scope) is rejected
  without a call for the rest of the run.
* When the error budget (exactonline_api.budget) is spent, the session refuses to send, and the
  record is rejected as "not sent" with the time to retry; so is every later record of that
  endpoint, each without a call.
* Anything else (no usable answer after retries, a 429 that does not end) is not a refusal: it
  stops the run without saving state, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from exactonline_api.errors import EndpointBlocked, ErrorBudgetSpent, ExactAPIError

# Refusals that say nothing about the record itself: not remembered against its fingerprint.
NOT_THE_RECORDS_FAULT = frozenset({401, 403, 404, 405, 429})
# 403 Reasons that close the whole division (the others, like a missing scope, one endpoint).
DIVISION_REASONS = frozenset({"nodivisionaccess", "divisionblocked", "blockeduser", "inactiveuser",
                              "blockedcustomer", "licenseexpired"})


@dataclass(frozen=True)
class Verdict:
    reason: str
    not_sent: bool = False  # no call was made for this record
    remember: bool = False  # keep the fingerprint: do not send it again until it changes


class Refusals:
    """What Exact refused in this run, per division and endpoint."""

    def __init__(self) -> None:
        self._closed: dict[tuple[int, str | None], str] = {}

    def closed(self, division: int | None, path: str) -> str | None:
        """Why nothing more is sent to this division or endpoint in this run; None: go on."""
        if division is None:
            return None
        reason = self._closed.get((division, None)) or self._closed.get((division, path))
        return f"not sent: an earlier call in this run was refused ({reason})" if reason else None

    def judge(self, exc: ExactAPIError | EndpointBlocked, *, what: str, division: int | None,
              path: str) -> Verdict:
        """The reject reason for a record whose call failed; re-raises what is no refusal."""
        if isinstance(exc, ErrorBudgetSpent):
            return Verdict(exc.reason, not_sent=True)
        if isinstance(exc, EndpointBlocked):  # sent, and Exact answered that it blocks the endpoint
            return Verdict(f"not written: {exc}")
        if not exc.refusal:
            raise exc
        reason = f"Exact refused {what}: {exc.message_text} (HTTP {exc.status})"
        if exc.status in (401, 403) and division is not None:
            whole = exc.reason.replace(" ", "").casefold() in DIVISION_REASONS
            self._closed[(division, None if whole else path)] = reason
        return Verdict(reason, remember=exc.status not in NOT_THE_RECORDS_FAULT)
