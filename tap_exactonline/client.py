"""The one base stream: an Exact endpoint read per division, page by page.

A plain singer-sdk ``Stream`` over the Exact facade (the SDK's "bring your own
client" shape): the session already does auth, limits, retries and paging, so
none of ``RESTStream``'s machinery would do work here. Each division is a
:class:`~tap_exactonline.parallel.DivisionJob`: its calls run on a reader
thread, its records and state on the main thread (tap_exactonline.sdk_hooks).
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context

from exactonline_api.compat import override
from exactonline_api.errors import DailyBudgetExhausted, EndpointBlocked, ExactAPIError, ExactError
from exactonline_api.registry import Endpoint, Entity
from tap_exactonline import pages
from tap_exactonline.pages import TypedRows
from tap_exactonline.parallel import DivisionJob
from tap_exactonline.schema import OffMidnight, build_schema, record_converter
from tap_exactonline.sdk_hooks import StreamHooks

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from exactonline_api.access import EmptyReadCheck
    from exactonline_api.api import ExactAPI
    from tap_exactonline.deletes import Deletions
    from tap_exactonline.progress import Progress
    from tap_exactonline.report import RunReport

# Lists of divisions that are the same whichever division asks: read from one division per run.
DIVISION_LISTS = frozenset({"system/Divisions", "system/AllDivisions", "system/GetMostRecentlyUsedDivisions"})

# Partition state key for partitions without a replication_key_value of their own (a stream that
# stays empty, or one bookmarked through its parent): their first full read is behind them.
FIRST_READ_DONE = "first_read_done"


@dataclass
class Reading:
    """What the streams of one run share. The tap builds it; nothing in it calls back into the tap."""

    api: Callable[[], ExactAPI]  # built on first use: discovery needs no token
    divisions: Callable[[], list[int]]
    report: RunReport
    deletions: Deletions
    progress: Progress
    start_moment: Callable[[], datetime | None] = lambda: None
    empty_reads: Callable[[], EmptyReadCheck | None] = lambda: None  # is an empty first read forbidden?
    routes_deletes: bool = True
    parallel_divisions: int = 1
    trims_text: bool = True


@dataclass
class Prepared:
    """What a division's reader worked out before its first page."""

    params: dict[str, str] = field(default_factory=dict)
    head: int | None = None  # the deletion log's head, for Deletions.begin
    since: int | None = None  # DeletedStream: the Timestamp the log is read after
    latest: int | None = None  # ParentStream: newest parent Modified seen (Exact local ms)
    first_read: bool = False  # no bookmark before this run: 0 rows may mean "no rights"


class ExactStream(StreamHooks):
    """Reads one registry entity; subclasses decide the filter and the bookmark."""

    is_sorted = False
    typed_pages = True  # rows of the page are this entity's rows (not so through a parent)
    BOOKMARK_KEYS = "replication_key_value"  # subclasses with their own bookmark name it here
    # State at least once a page: a killed run loses at most one page of progress.
    STATE_MSG_FREQUENCY = 1000
    # schema.record_converter already casts every Edm type; the SDK's per-property
    # conformance would do the same work again and cost half the run time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, entity: Entity, reading: Reading) -> None:
        self.entity = entity
        self.reading = reading
        self.routes_deletes = bool(entity.deleted_entity_type) and reading.routes_deletes
        super().__init__(tap=tap, name=entity.stream_name,
                         schema=build_schema(entity, tombstones=self.routes_deletes))
        self.primary_keys = list(entity.key)
        self.replication_key = entity.replication_key
        self.selected_by_default = entity.selected_by_default
        self.parallel_divisions = reading.parallel_divisions
        self.progress = reading.progress
        self._prepared: dict[int, Prepared] = {}

    @cached_property
    def _convert(self):
        # Built on first use: the catalog's selection is known by then, and the
        # converter keeps exactly the selected properties.
        keep = [name for name in self.schema["properties"] if self._is_selected(name)]
        return record_converter(self.entity, keep=[*keep, *self.primary_keys], trim=self.reading.trims_text,
                                warn=self._off_midnight)

    @cached_property
    def _off_midnight(self) -> OffMidnight:
        return OffMidnight(self.name)  # shared by both decoders: one warning per field either way

    @cached_property
    def _typed(self) -> TypedRows | None:
        """Typed page decoding, for plain streams that read their own pages."""
        if not self.typed_pages or self._record_writer is None:
            return None
        fields = self.select_fields()
        return TypedRows(self.entity, fields if "Division" in fields else [*fields, "Division"],
                         trim=self.reading.trims_text, warn=self._off_midnight)

    @property
    def endpoint(self) -> Endpoint:
        return self.entity.source

    @property
    def path(self) -> str:
        return self.endpoint.path

    @property
    @override
    def partitions(self) -> list[dict]:
        divisions = self.reading.divisions()
        if self.endpoint.path in DIVISION_LISTS:
            divisions = divisions[:1]
        return [{"Division": d} for d in divisions]

    def select_fields(self, endpoint: Endpoint | None = None) -> list[str]:
        """Selected properties that the endpoint serves (bulk demands ``$select``)."""
        endpoint = endpoint or self.endpoint
        served = {f.name for f in endpoint.scalar_fields}
        return [name for name in self.schema["properties"] if name in served and self._is_selected(name)]

    def _is_selected(self, name: str) -> bool:
        return self.mask.get(("properties", name), True)

    def query_options(self, context: dict) -> dict[str, str]:
        return {"$select": ",".join(self.select_fields())}

    # -- a division's reader thread: calls only, state is read, never written -----------------

    def division_job(self, context: dict) -> DivisionJob | None:
        division = context["Division"]
        if self.reading.report.division_stopped(division):
            self.reading.report.note_unfinished(division, self.name)
            return None
        _ = self._convert, self._typed  # built here, on the main thread, before readers start
        return DivisionJob(context, lambda: self.prepare(context), lambda prepared: self.read_pages(context, prepared))

    def prepare(self, context: dict) -> Prepared:
        head = self.reading.deletions.prepare(self, context) if self.routes_deletes else None
        return Prepared(params=self.query_options(context), head=head)

    def read_pages(self, context: dict, prepared: Prepared) -> Iterator[list]:
        typed = self._typed
        for payload in self.reading.api().pages(context["Division"], self.path, prepared.params,
                                                decode=typed.decode if typed is not None else None):
            yield self.page_rows(payload, prepared)

    def page_rows(self, payload: t.Any, prepared: Prepared) -> list:
        try:
            return pages.rows(payload)
        except ValueError as exc:
            raise ExactError(f"{self.path}: unexpected answer from Exact ({exc})") from None

    # -- the main thread: records, state, the run report ---------------------------------------

    def division_started(self, context: dict, prepared: Prepared) -> None:
        # Read before this run writes any bookmark (readers never write state).
        state = self.get_context_state(context)
        # Without the marker an empty stream (it never gets a bookmark) would ask for its rights on
        # every run: one call per empty stream and division, where the first full read is enough.
        prepared.first_read = state.get("replication_key_value") is None and not state.get(FIRST_READ_DONE)
        self._prepared[context["Division"]] = prepared
        self.progress.start(context["Division"], self.name)
        if self.routes_deletes:
            self.reading.deletions.begin(self, context, prepared.head)

    def division_finished(self, context: dict) -> t.Iterable[dict]:
        """Records after the last page (tombstones); the division's bookmarks move here."""
        division = context["Division"]
        prepared = self._prepared.pop(division, None)
        empty_reads = self.reading.empty_reads()
        if (prepared is not None and prepared.first_read and empty_reads is not None
                and not self.reading.report.records.get((division, self.name))):
            empty_reads.check(division, self.endpoint.path, self.name)  # forbidden, or empty?
        state = self.get_context_state(context)
        if prepared is not None and prepared.first_read and state.get("replication_key_value") is None:
            state[FIRST_READ_DONE] = True
        if self.routes_deletes:
            yield from self.reading.deletions.tombstones(self, context["Division"])
        self.progress.end(context["Division"])

    def division_failed(self, context: dict, exc: BaseException) -> None:
        division = context["Division"]
        self._prepared.pop(division, None)
        if isinstance(exc, DailyBudgetExhausted):
            self.progress.end(division, "stopped: daily reserve reached")
            self.reading.report.stop_division(division, self.name, exc)
        elif isinstance(exc, (EndpointBlocked, ExactAPIError)):
            self.progress.end(division, "failed")
            self.reading.report.fail_stream(division, self.name, exc)
        else:
            raise exc
        if not self.is_sorted:
            # Rows of an unsorted stream arrive in key order: promoting the
            # highest value seen would skip the rows not read yet.
            self.get_context_state(context).pop("progress_markers", None)

    def division_counted(self, context: dict, records: int) -> None:
        self.reading.report.count(context["Division"], self.name, records)
        self.progress.add(context["Division"], records)

    @override
    def post_process(self, row: t.Any, context: Context | None = None) -> t.Any:
        division = t.cast(dict, context)["Division"]
        if row.__class__ is not dict:
            return t.cast(TypedRows, self._typed).convert(row, division)
        return self._convert(row, division)

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        """One division, start to end, on this thread (the SDK's contract; syncs use sdk_hooks)."""
        context = t.cast(dict, context)
        job = self.division_job(context)
        if job is None:
            return
        try:
            prepared = job.prepare()
            self.division_started(context, prepared)
            for rows in job.pages(prepared):
                yield from rows
        except Exception as exc:  # noqa: BLE001  (division_failed re-raises what it does not handle)
            self.division_failed(context, exc)
            return
        yield from self.division_finished(context)
