"""What this app may use: the divisions the user granted, and the user's rights per endpoint.

Both are read up front so that nothing forbidden costs a call that Exact answers with an error:
a division that was not ticked on the consent screen answers 403 (``NoDivisionAccess``), and each
such answer counts toward Exact's hourly error limit on that endpoint. An endpoint the user has
no rights for is worse: Exact answers an empty list, so a forbidden stream looks like an empty
one (``users/UserHasRights`` tells them apart).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from exactonline_api import odata
from exactonline_api.errors import (
    AUTH_COMMAND,
    EndpointBlocked,
    ExactAPIError,
    ExactError,
)
from exactonline_api.http import paginate

LOG = logging.getLogger("exactonline_api.access")

RIGHTS_PATH = "users/UserHasRights"


def not_granted_reason(division: int) -> str:
    return (f"division {division} is not granted to this app: run `{AUTH_COMMAND}` again and tick it on "
            "Exact's consent screen")


def all_rows(session: Any, url: str, base_url: str) -> Iterator[dict]:
    """Every row behind a URL, through the one pagination loop (``http.paginate``: next links only
    to the URL's own host, which is ``base_url``'s: the link gets our token)."""
    for payload in paginate(session.get_json, url):
        try:
            yield from odata.results(payload)
        except ValueError as exc:
            raise ExactError(f"unexpected answer from Exact ({exc})") from None


@dataclass
class Grants:
    """The user's current division and every division the app was granted (``system/Divisions``)."""

    current: int
    rows: list[dict] = field(default_factory=list)

    @property
    def codes(self) -> list[int]:
        return sorted({int(r["Code"]) for r in self.rows} | {self.current})

    def refused(self, wanted: Iterable[int]) -> dict[int, str]:
        """The wanted divisions that were not granted, each with the reason."""
        granted = set(self.codes)
        return {d: not_granted_reason(d) for d in sorted(set(wanted) - granted)}


def read_current_division(session: Any, base_url: str) -> int:
    """``current/Me``: no division in the URL, not counted by Exact."""
    me = odata.results(session.get_json(f"{base_url.rstrip('/')}/api/v1/current/Me?$select=CurrentDivision"))
    if not me or me[0].get("CurrentDivision") in (None, ""):
        raise ExactError("Exact's current/Me named no current division for this user")
    return int(me[0]["CurrentDivision"])


def read_grants(session: Any, base_url: str, select: str = "Code", current: int | None = None) -> Grants:
    """``current/Me`` (unless ``current`` is known), then ``system/Divisions`` on the current division."""
    base = base_url.rstrip("/")
    if current is None:
        current = read_current_division(session, base)
    url = f"{base}/api/v1/{current}/system/Divisions?$select={quote(select, safe=',')}"
    grants = Grants(current, list(all_rows(session, url, base)))
    LOG.info("divisions granted to this app: %s", grants.codes)
    return grants


def has_rights(session: Any, base_url: str, division: int, path: str, action: str = "GET") -> bool | None:
    """``users/UserHasRights`` for one endpoint; None when Exact did not say (the check is advisory)."""
    url = (f"{base_url.rstrip('/')}/api/v1/{division}/{RIGHTS_PATH}?endpoint="
           f"{quote(odata.string_literal(path), safe='')}&action={quote(odata.string_literal(action), safe='')}")
    try:
        payload = session.get_json(url)
    except (ExactAPIError, EndpointBlocked) as exc:  # advisory: never worth failing a stream over
        LOG.debug("rights for %s not known: %s", path, exc)
        return None
    body = payload.get("d") if isinstance(payload, dict) else None
    if isinstance(body, dict) and isinstance(body.get("results"), list) and body["results"]:
        body = body["results"][0]
    value = body.get("UserHasRights") if isinstance(body, dict) else None
    return value if isinstance(value, bool) else None


def missing_rights(session: Any, base_url: str, division: int, paths: Iterable[str]) -> list[str]:
    """The endpoints (one call each) that Exact says this user may not read in ``division``."""
    return [p for p in dict.fromkeys(paths) if has_rights(session, base_url, division, p) is False]


class EmptyReadCheck:
    """A first full read that found 0 rows: is the stream empty, or forbidden? Asked once per endpoint."""

    def __init__(self, session: Any, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self._asked: dict[tuple[int, str], bool | None] = {}

    def check(self, division: int, path: str, stream: str) -> bool | None:
        """Log a WARNING naming the missing right; the answer of ``users/UserHasRights``."""
        key = (division, path)
        if key not in self._asked:
            self._asked[key] = has_rights(self.session, self.base_url, division, path)
            if self._asked[key] is False:
                LOG.warning("%s read 0 rows in division %s because the Exact user has no right to read %s "
                            "(users/UserHasRights says no): the table stays empty until an Exact administrator "
                            "grants that right to the user (then run a full sync of the stream)",
                            stream, division, path)
        return self._asked[key]
