"""Route ``sync/Deleted`` to the entity streams as tombstones.

Exact never returns deleted rows from sync endpoints; it logs deletions in
``sync/Deleted`` (an EntityType number and the entity key) for two months.
The log is read once per division per run, from the lowest bookmark any
stream needs, and shared: the raw ``deleted`` stream and every entity stream
read from the same rows.

Each entity stream keeps its own ``deleted_timestamp`` in its partition
state and moves it only after its tombstones were emitted, so state is never
ahead of the data a target wrote.
"""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from exactonline_api.registry import deleted_entity_types, endpoints, entities, raw_metadata
from exactonline_api.timeutil import parse_exact_datetime

if t.TYPE_CHECKING:
    from exactonline_api.api import ExactAPI
    from tap_exactonline.client import ExactStream

LOG = logging.getLogger("tap_exactonline.deletes")
RETENTION = timedelta(days=60)  # "the log of records deleted is saved for 2 months"
MARK, CHECKED = "deleted_timestamp", "deleted_checked_at"
HEAD = "deleted_head"  # the log head a full read started at, kept until the read finished
DELETED_FIELDS = ",".join(f.name for f in endpoints()["sync/Deleted"].scalar_fields)


def _ts(row: dict) -> int:
    return int(row["Timestamp"])


@dataclass
class DivisionLog:
    since: int | None = None
    rows: list[dict] = field(default_factory=list)
    head: int | None = None


class Deletions:
    """The deletion log per division, and its routing to the streams as tombstones.

    ``api`` gives the Exact facade (built on first use), ``routed_streams`` the
    selected streams that route deletions, ``now`` the current moment.
    """

    def __init__(self, api: Callable[[], ExactAPI], routed_streams: Callable[[], list[ExactStream]], *,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.api = api
        self.routed_streams = routed_streams
        self.now = now
        self._logs: dict[int, DivisionLog] = {}
        self._first_heads: dict[tuple[str, int], int] = {}
        by_sync_path = {e.sync.path: e for e in entities().values() if e.sync}
        names = {row["EntityType"]: row["name"] for row in raw_metadata()["deleted_entity_types"]}
        self._descriptions = {
            number: {
                "EntityName": names.get(number),
                "StreamName": by_sync_path[path].stream_name if path in by_sync_path else None,
            }
            for number, path in deleted_entity_types().items()
        }

    def describe(self, entity_type: object) -> dict:
        return self._descriptions.get(t.cast(int, entity_type), {"EntityName": None, "StreamName": None})

    # -- reading the log once ---------------------------------------------------

    def _lowest_mark(self, division: int) -> int | None:
        marks = []
        for stream in self.routed_streams():
            mark = stream.get_context_state({"Division": division}).get(MARK)
            if mark is not None:
                marks.append(int(mark))
        return min(marks) if marks else None

    def _log(self, division: int, since: int | None = None) -> DivisionLog:
        log = self._logs.setdefault(division, DivisionLog())
        wanted = [m for m in (self._lowest_mark(division), since) if m is not None]
        lowest = min(wanted) if wanted else None
        if lowest is not None and (log.since is None or lowest < log.since):
            params = {"$filter": f"Timestamp gt {lowest}L", "$select": DELETED_FIELDS}
            log.rows = list(self.api().rows(division, "sync/Deleted", params))
            log.rows.sort(key=_ts)
            log.since = lowest
            log.head = max([lowest, *(_ts(r) for r in log.rows)])
        return log

    def rows(self, division: int, since: int) -> list[dict]:
        return [row for row in self._log(division, since).rows if _ts(row) > since]

    def head(self, division: int) -> int:
        """The newest deletion Timestamp as of now: where a fresh stream starts."""
        log = self._log(division)
        if log.head is None:
            log.head = self.api().sync_timestamp_at(division, "sync/Deleted", self.now())
        return log.head

    # -- routing ----------------------------------------------------------------

    def prepare(self, stream: ExactStream, context: dict) -> int | None:
        """On the division's reader thread, before it reads: the calls :meth:`begin` needs.

        Loads the division's log (read once per run, shared by its streams) and, for a
        stream that starts its deletion bookmark afresh, the log's head. Reads the
        stream's state, never writes it (the main thread owns state).
        """
        state = stream.get_context_state(context)
        if state.get(MARK) is None and state.get(HEAD) is not None:
            self._log(context["Division"], int(state[HEAD]))  # begin() turns that head into the bookmark
            return None
        self._log(context["Division"])
        if state.get(MARK) is None:
            return self.head(context["Division"])
        return None

    def begin(self, stream: ExactStream, context: dict, head: int | None) -> None:
        """Before a stream's records of a division are written: note the log head.

        A stream syncing a division for the first time, or in full again, starts
        its deletion bookmark at the log's head *before* it reads, so a row
        deleted while it reads is still tombstoned. That head is kept in the
        state until the read finished: when a budget stop cuts the read short,
        the next run goes on from it, so rows read before the stop and deleted
        since are still tombstoned. (A deletion check older than the log's
        retention is found before the run starts: :mod:`tap_exactonline.resync`
        drops the bookmarks, these included.)
        """
        state = stream.get_context_state(context)
        if state.get(MARK) is None:
            started = state.pop(HEAD, None)
            if started is not None:
                state[MARK] = int(started)
            else:
                head = self.head(context["Division"]) if head is None else head
                self._first_heads[(stream.name, context["Division"])] = head
                state[HEAD] = head

    def tombstones(self, stream: ExactStream, division: int) -> t.Iterator[dict]:
        context = {"Division": division}
        state = stream.get_context_state(context)
        mark = state.get(MARK)
        head: int | None
        if mark is None:
            head = self._first_heads.pop((stream.name, division))
            state.pop(HEAD, None)
        else:
            number = stream.entity.deleted_entity_type
            key = stream.entity.key[0]
            count = 0
            log = self._log(division)
            for row in log.rows:
                if row.get("EntityType") == number and _ts(row) > int(mark):
                    count += 1
                    yield {key: row["EntityKey"], "Division": division,
                           "_sdc_deleted_at": parse_exact_datetime(row.get("DeletedDate"))
                           or self.now().isoformat()}
            head = log.head
            if count:
                LOG.info("%s division %s: %d deletions routed", stream.name, division, count)
        state[MARK] = max(int(mark or 0), int(head or 0))
        state[CHECKED] = self.now().isoformat()
