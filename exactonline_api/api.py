"""The Exact Online API as the tap sees it: URLs, pages, divisions, move dates, SyncTimestamp.

One facade over :class:`~exactonline_api.http.ExactSession`. It knows Exact's URL
layout and a few of its functions, and nothing of Singer: the tap's streams,
deletions reader and resync planner call it, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from exactonline_api import odata
from exactonline_api.access import Grants, read_grants
from exactonline_api.http import Decode, ExactSession
from exactonline_api.registry import endpoints
from exactonline_api.timeutil import filter_datetime, parse_exact_datetime


def move_dates(rows: Iterable[dict]) -> dict[int, str | None]:
    """``system/Divisions`` rows -> {division: DivisionMoveDate as ISO UTC, or None if never moved}."""
    return {int(r["Code"]): parse_exact_datetime(r.get("DivisionMoveDate")) for r in rows}


class ExactAPI:
    """Reads from one Exact site through one session (auth, limits and retries live there)."""

    def __init__(self, session: ExactSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._grants: Grants | None = None

    def url(self, division: int | None, path: str, params: dict[str, str] | None = None) -> str:
        """``{base}/api/v1/{division}/{path}?{options}``; beta endpoints carry the division inside."""
        ep = endpoints().get(path)
        below = ep.url_path(division) if ep else (f"{division}/{path}" if division is not None else path)
        query = odata.query_string(params) if params else ""
        return f"{self.base_url}/api/v1/{below}" + (f"?{query}" if query else "")

    def pages(self, division: int | None, path: str, params: dict[str, str], *,
              decode: Decode | None = None) -> Iterator[Any]:
        """Every page of a collection, typed by ``decode`` when given (see ExactSession.get_page)."""
        return self.session.paginate(self.url(division, path, params), decode)

    def rows(self, division: int | None, path: str, params: dict[str, str]) -> Iterator[dict]:
        for payload in self.pages(division, path, params):
            yield from odata.results(payload)

    # -- Exact's functions -------------------------------------------------------------------

    def grants(self) -> Grants:
        """The user's current division and the granted divisions (``system/Divisions``, with their
        DivisionMoveDate): read once per run, up front (exactonline_api.access)."""
        if self._grants is None:
            self._grants = read_grants(self.session, self.base_url, "Code,Description,DivisionMoveDate")
        return self._grants

    def move_dates(self) -> dict[int, str | None]:
        """``DivisionMoveDate`` of every granted division (ISO UTC, or None if never moved)."""
        return move_dates(self.grants().rows)

    def sync_timestamp_at(self, division: int, path: str, moment: datetime) -> int:
        """Translate a moment to a sync Timestamp (``read/sync/Sync/SyncTimestamp``)."""
        params = {"modified": filter_datetime(moment), "endPoint": odata.string_literal(path.rsplit("/", 1)[-1])}
        rows = odata.results(self.session.get_page(self.url(division, "read/sync/Sync/SyncTimestamp", params)))
        value = rows[0].get("TimeStampAsBigInt") if rows else None
        return int(value) if value not in (None, "") else 1
