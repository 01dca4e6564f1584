"""Full resyncs: when a division moved, or the deletion log has a gap.

Two events make a stream's bookmarks for a division worthless:

* **A division move.** Exact moved the division to another database and its
  sync Timestamps restarted (``system/Divisions.DivisionMoveDate`` changed).
  Every partition remembers the move date it was read against
  (``division_move_date``); when Exact reports another one, the division is
  read again in full.
* **The retention gap.** ``sync/Deleted`` keeps two months. A stream whose
  last deletion check is older cannot tell which rows were deleted meanwhile.

Either way the stream is re-read in full. Rows that were deleted in Exact and
never tombstoned would stay in the warehouse, so with ``resync_activate_version``
(the default) the stream is re-read for *every* division of the run, each
RECORD carries a version V, and one ``ACTIVATE_VERSION`` V follows once every
division finished: the target then drops (or marks deleted) every row of the
table that the resync did not write. V is kept in the stream's state
(``resync_version``) until it was sent, so a run stopped by the daily budget is
continued by the next run with the same V. The raw ``deleted`` stream is never
versioned (its rows are the log itself).

Without the setting only the affected division is re-read, and rows deleted
during a gap can remain.

Planning happens once, before the first stream syncs (it needs every
partition's state); the activation happens after the last.
"""

from __future__ import annotations

import logging
import time
import typing as t
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from exactonline_api.timeutil import parse_iso_utc
from tap_exactonline.deletes import CHECKED, HEAD, MARK, RETENTION

if t.TYPE_CHECKING:
    from tap_exactonline.client import ExactStream
    from tap_exactonline.report import RunReport

LOG = logging.getLogger("tap_exactonline.resync")
MOVED = "division_move_date"  # partition state: DivisionMoveDate the bookmarks belong to
VERSION = "resync_version"  # stream state: a versioned resync whose ACTIVATE_VERSION is pending
_UNKNOWN = object()


def drop_bookmarks(stream: ExactStream, state: dict) -> None:
    """Forget where a stream's partition was: it is read in full next."""
    for key in ("replication_key_value", "progress_markers", "starting_replication_value",
                "replication_key_signpost", MARK, CHECKED, HEAD, stream.BOOKMARK_KEYS):
        state.pop(key, None)


def is_versionable(stream: ExactStream) -> bool:
    return stream.entity.source.path != "sync/Deleted"


class Resyncs:
    """Plans full resyncs before the first stream and activates their versions after the last.

    It gets what it uses: the run's ``streams`` and ``divisions``, the ``move_dates``
    of those divisions, the run ``report`` (which divisions did not finish) and
    ``write_state`` (a STATE message of the whole tap state).
    """

    def __init__(
        self,
        streams: Callable[[], list[ExactStream]],
        divisions: Callable[[], list[int]],
        move_dates: Callable[[], Mapping[int, str | None]],
        report: RunReport,
        write_state: Callable[[], None],
        *,
        use_versions: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        new_version: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.streams = streams
        self.divisions = divisions
        self.move_dates = move_dates
        self.report = report
        self.write_state = write_state
        self.use_versions = use_versions
        self.now = now
        self.new_version = new_version
        self.pending: dict[str, int] = {}  # stream name -> version whose ACTIVATE_VERSION is due
        self.full_resyncs: list[str] = []  # "stream/division" read in full this run (for the log)

    # -- before the first stream ------------------------------------------------

    def plan(self) -> None:
        streams = [s for s in self.streams() if s.selected]
        if not streams:
            return
        divisions = self.divisions()
        moves = self.move_dates()
        reasons: dict[str, dict[int, str]] = {}  # stream -> division -> why
        moved: dict[int, list[str]] = {}
        for stream in streams:
            for division in divisions:
                state = stream.get_context_state({"Division": division})
                why = self._move(state, moves.get(division, _UNKNOWN))
                if why:
                    moved.setdefault(division, []).append(stream.name)
                else:
                    why = self._gap(stream, state)
                if why:
                    reasons.setdefault(stream.name, {})[division] = why
        for division, names in sorted(moved.items()):
            LOG.warning("division %s was moved to another Exact database (%s): Exact reset its sync "
                        "timestamps, so its bookmarks are dropped and it is read again in full (%s)",
                        division, reasons[names[0]][division], ", ".join(names))
        for stream in streams:
            self._plan_stream(stream, divisions, reasons.get(stream.name, {}))

    @staticmethod
    def _move(state: dict, now: object) -> str | None:
        if now is _UNKNOWN:
            return None  # not read this run: keep what we remember
        if MOVED not in state:
            state[MOVED] = now  # the first run only records the date
            return None
        before = state[MOVED]
        if before == now:
            return None
        state[MOVED] = now
        return f"DivisionMoveDate {before} -> {now}"

    def _gap(self, stream: ExactStream, state: dict) -> str | None:
        checked = state.get(CHECKED)
        if not stream.routes_deletes or state.get(MARK) is None or not checked:
            return None
        if self.now() - parse_iso_utc(checked) <= RETENTION:
            return None
        return (f"last deletion check {checked} is older than Exact keeps its deletion log "
                f"({RETENTION.days} days)")

    def _plan_stream(self, stream: ExactStream, divisions: list[int], reasons: dict[int, str]) -> None:
        stream_state = stream.stream_state
        pending = stream_state.get(VERSION)
        versioned = self.use_versions and is_versionable(stream)
        if not versioned:
            if pending is not None:
                stream_state.pop(VERSION)
                LOG.warning("%s: resync_activate_version is off, so the pending ACTIVATE_VERSION %s is "
                            "dropped; rows deleted in Exact before the last full resync may remain in the "
                            "warehouse", stream.name, pending)
            for division, why in sorted(reasons.items()):
                drop_bookmarks(stream, stream.get_context_state({"Division": division}))
                self.full_resyncs.append(f"{stream.name}/{division}")
                gap = "" if why.startswith("DivisionMoveDate") else (
                    "; rows deleted in Exact during the gap may remain in the warehouse "
                    "(resync_activate_version is off)")
                LOG.warning("%s division %s: %s; resyncing it in full%s", stream.name, division, why, gap)
            return
        if reasons:
            version = int(pending) if pending is not None else self.new_version()
            for division in divisions:
                drop_bookmarks(stream, stream.get_context_state({"Division": division}))
                self.full_resyncs.append(f"{stream.name}/{division}")
            why = "; ".join(f"division {d}: {r}" for d, r in sorted(reasons.items()))
            LOG.warning("%s: %s; resyncing the stream in full for every division of this run (%s) with "
                        "version %s. ACTIVATE_VERSION %s follows once all of them finished: the target then "
                        "removes (or marks _sdc_deleted_at) every row the resync did not write, including "
                        "rows of divisions or jobs outside this run", stream.name, why,
                        ", ".join(map(str, divisions)), version, version)
        elif pending is not None:
            version = int(pending)
            LOG.warning("%s: continuing the full resync of an earlier run with version %s; ACTIVATE_VERSION "
                        "follows once every division finished", stream.name, version)
        else:
            return
        stream_state[VERSION] = version
        stream.begin_versioned_resync(version)  # every RECORD of this stream carries it
        self.pending[stream.name] = version

    # -- after the last stream --------------------------------------------------

    def finish(self) -> None:
        activated = False
        streams = {stream.name: stream for stream in self.streams()}
        for name, version in self.pending.items():
            stream = streams[name]
            unfinished = self.report.unfinished_divisions(name)
            if unfinished:
                LOG.warning("%s: ACTIVATE_VERSION %s held back, division(s) %s did not finish; the next run "
                            "continues the resync with the same version", name, version,
                            ", ".join(map(str, unfinished)))
                continue
            stream.activate_version(version)
            stream.stream_state.pop(VERSION, None)
            activated = True
            LOG.info("%s: full resync complete, ACTIVATE_VERSION %s sent", name, version)
        if activated:
            self.write_state()
