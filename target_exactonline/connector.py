"""The client that writes to Exact: URLs, batched lookups by natural key, safe creates, updates.

It knows nothing about Singer or about records; the upserters (upsert.py, documents.py) decide
what to look up and write.

* Lookups: one filtered GET per URL-sized chunk of keys (``$filter=Code eq 'a' or Code eq 'b' ...``,
  split to Exact's 6,000-character URL limit by :func:`exactonline_api.odata.batch_or_filters`,
  string values escaped). A key whose clause alone is longer than a URL can hold is not sent: it is
  handed to the caller's ``too_long`` callback (that record is rejected, the others are looked up).
* Creates: a POST whose outcome is unknown (timeout, 5xx without Exact's message, dropped
  connection: :class:`exactonline_api.http.WriteOutcomeUnknown`) is followed by a lookup of its
  natural key (and, when that finds nothing, one more after a pause, for a request still running at
  Exact) before any retry, so a retry never creates a duplicate. A refusal (4xx, or 500 with Exact's
  message) is final: it reaches the caller as :class:`ExactAPIError` after exactly one POST.
* Updates: a PUT whose outcome is unknown is simply repeated (idempotent).

``crm/Accounts.Code`` is stored left-padded to 18 characters; it is looked up with
``trim(Code) eq 'WB0001'``, which finds the code whatever the padding (Exact documents ``trim``).

Request bodies (which can hold base64 attachments) are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from exactonline_api import odata
from exactonline_api.access import Grants, all_rows, read_current_division, read_grants
from exactonline_api.errors import ExactError
from exactonline_api.http import ExactSession, WriteOutcomeUnknown
from exactonline_api.registry import Endpoint, Field
from exactonline_api.timeutil import EXACT_TZ
from target_exactonline.fields import key_part, local_datetime

LOG = logging.getLogger("target_exactonline.connector")

WRITE_HEADERS = {"Prefer": "return=representation", "Content-Type": "application/json"}
# Room left in the URL for the $skiptoken Exact appends to __next links.
URL_MARGIN = 100
_QUOTE_SAFE = "$'(),/:=*"
# Fields Exact stores padded: looked up through trim(), see the module docstring.
PADDED_FIELDS = frozenset({("crm/Accounts", "Code")})


class ExactWriter:
    """Lookups and writes on one :class:`ExactSession`; knows nothing about Singer."""

    def __init__(
        self,
        session: ExactSession,
        base_url: str,
        *,
        dry_run: bool = False,
        post_attempts: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.dry_run = dry_run
        self.post_attempts = max(1, post_attempts)
        self.retry_delay = retry_delay
        self._current_division: int | None = None
        self._grants: Grants | None = None

    # URLs

    def collection_url(self, endpoint: Endpoint, division: int) -> str:
        return f"{self.base_url}/api/v1/{endpoint.url_path(division)}"

    def entity_url(self, endpoint: Endpoint, division: int, ident: Any) -> str:
        key = endpoint.field(endpoint.primary_key[0]) if endpoint.primary_key else None
        edm = key.edm if key else "Edm.Guid"
        return f"{self.collection_url(endpoint, division)}({odata.literal(ident, edm)})"

    # reads

    def get_rows(self, url: str) -> list[dict]:
        """Every row behind a URL, following ``__next`` (only to our own host: it carries the token)."""
        return list(all_rows(self.session, url, self.base_url))

    @staticmethod
    def clause(endpoint: Endpoint, fields: Sequence[Field], values: Sequence[Any]) -> str:
        """``Email eq 'a@b.nl'``, ``trim(Code) eq 'WB1'``, ``(Document eq guid'..' and FileName eq 'x')``."""
        parts = []
        for fld, value in zip(fields, values):
            if (endpoint.path, fld.name) in PADDED_FIELDS:
                parts.append(f"trim({fld.name}) eq {odata.string_literal(str(value).strip())}")
                continue
            if fld.edm == "Edm.DateTime":
                value = local_datetime(value).replace(tzinfo=EXACT_TZ)
            parts.append(f"{fld.name} eq {odata.literal(value, fld.edm)}")
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def find(
        self,
        endpoint: Endpoint,
        division: int,
        fields: Sequence[Field],
        keys: Iterable[Sequence[Any]],
        select: Iterable[str],
        too_long: Callable[[Sequence[Any], int], object] | None = None,
    ) -> list[dict]:
        """Rows whose ``fields`` equal one of ``keys``: one GET per URL-sized chunk (plus pages).

        A key that cannot fit in a URL on its own is passed to ``too_long`` (with its encoded
        length) and left out; without a callback it raises :class:`ExactError`.
        """
        unique: dict[tuple, Sequence[Any]] = {}
        for key in keys:
            unique.setdefault(tuple(key_part(f.edm, v) for f, v in zip(fields, key)), key)
        if not unique:
            return []
        names = ",".join(dict.fromkeys(s for s in select if endpoint.has(s)))
        prefix = f"{self.collection_url(endpoint, division)}?$select={quote(names, safe=_QUOTE_SAFE)}&$filter="
        budget = odata.MAX_URL_LENGTH - len(prefix) - URL_MARGIN
        clauses = []
        for key in unique.values():
            clause = self.clause(endpoint, fields, key)
            length = odata.encoded_length(clause)
            if length <= budget:
                clauses.append(clause)
            elif too_long is not None:
                too_long(key, length)
            else:
                raise ExactError(f"{endpoint.path}: a lookup key is {length} characters once encoded, longer "
                                 f"than a URL can hold ({budget})")
        rows: list[dict] = []
        for expression, _ in odata.batch_or_filters(clauses, budget):
            rows.extend(self.get_rows(prefix + quote(expression, safe=_QUOTE_SAFE)))
        return rows

    def division_problems(self, divisions: Iterable[int]) -> dict[int, str]:
        """Divisions this app may not write to, with the reason (at most two calls per run).

        ``current/Me`` first (not counted by Exact); the division list only when a record names
        another division than the current one.
        """
        wanted = set(divisions)
        if not wanted:
            return {}
        if self._current_division is None:
            self._current_division = read_current_division(self.session, self.base_url)
        if wanted <= {self._current_division}:
            return {}
        if self._grants is None:
            self._grants = read_grants(self.session, self.base_url, current=self._current_division)
        return self._grants.refused(wanted)

    # writes

    def create(
        self,
        endpoint: Endpoint,
        division: int,
        body: dict,
        *,
        describe: str,
        recover: Callable[[], dict | None],
    ) -> dict:
        """POST; when the outcome is unknown, look the record up before trying again (never a duplicate)."""
        url = self.collection_url(endpoint, division)
        for attempt in range(1, self.post_attempts + 1):
            try:
                response = self.session.post(url, json=body, headers=WRITE_HEADERS)
            except WriteOutcomeUnknown as exc:
                LOG.warning("%s: %s; looking it up before any retry", describe, exc)
                found = recover()
                if found is None:
                    # A request we gave up on (timeout) may still be running at Exact and land late:
                    # look once more after a pause before posting again.
                    self.session.sleep(self.retry_delay * attempt)
                    found = recover()
                if found is not None:
                    LOG.info("%s: the lost POST did create it; not posting again", describe)
                    return found
                if attempt == self.post_attempts:
                    raise ExactError(
                        f"{describe}: Exact did not answer {attempt} POSTs and the record is not "
                        "there; stopping without saving state (a rerun picks it up)") from None
                LOG.info("%s: not created; posting again (attempt %d/%d)", describe, attempt + 1,
                         self.post_attempts)
                continue
            row = _single_row(response)
            if row is None or not _ident(endpoint, row):
                # Some endpoints answer only the key, or nothing usable: fetch the record itself.
                row = recover() or dict(body)
            return row
        raise AssertionError("unreachable")

    def update(self, endpoint: Endpoint, division: int, ident: Any, body: dict, *, describe: str) -> None:
        """PUT (idempotent: an unknown outcome is simply retried)."""
        url = self.entity_url(endpoint, division, ident)
        for attempt in range(1, self.post_attempts + 1):
            try:
                self.session.put(url, json=body, headers=WRITE_HEADERS)
                return
            except WriteOutcomeUnknown as exc:
                if attempt == self.post_attempts:
                    raise ExactError(f"{describe}: Exact did not answer {attempt} PUTs; stopping "
                                     "without saving state (a rerun picks it up)") from None
                LOG.warning("%s: %s; a PUT is safe to repeat, retrying", describe, exc)
                self.session.sleep(self.retry_delay * attempt)


def _single_row(response: Any) -> dict | None:
    try:
        rows = odata.results(response.json())
    except ValueError:
        return None
    return rows[0] if rows and isinstance(rows[0], dict) else None


def _ident(endpoint: Endpoint, row: dict) -> Any:
    name = endpoint.primary_key[0] if endpoint.primary_key else "ID"
    return row.get(name)
