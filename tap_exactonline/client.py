"""The one base stream: an Exact endpoint read per division, page by page."""

from __future__ import annotations

import typing as t
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import cached_property
from urllib.parse import quote

from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import HTTPRequest, PageContext

from exactonline_api.errors import DailyBudgetExhausted, EndpointBlocked, ExactAPIError, ExactError
from exactonline_api.registry import Endpoint, Entity
from tap_exactonline import pages
from tap_exactonline.output import ExactMessageWriter, RecordWriter, is_plain
from tap_exactonline.pages import TypedRows
from tap_exactonline.schema import OffMidnight, build_schema, record_converter

if t.TYPE_CHECKING:
    import requests

    from tap_exactonline.tap import TapExactOnline

_QUERY_SAFE = "$'(),/:=*"


def query_string(params: dict[str, str]) -> str:
    """OData options with spaces as %20 (WCF reads ``+`` literally) and quotes kept."""
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe=_QUERY_SAFE)}" for k, v in params.items() if v)


def _pass_through(request):
    return request


class ODataNextPaginator(BaseAPIPaginator):
    """Follows ``d.__next`` verbatim, as Exact asks; refuses links to another host."""

    def __init__(self, origin: str) -> None:
        super().__init__(None)
        self._origin = origin

    def get_next(self, response: requests.Response) -> str | None:
        link = pages.next_link(getattr(response, "exact_payload", None) or response.json())
        if link and not link.startswith(self._origin):
            # The bearer token must never be sent to a host we did not choose.
            raise ExactError(f"Exact returned a next-page link to another host ({link.split('?')[0]})")
        return link


class ExactStream(RESTStream):
    """Reads one registry entity; subclasses decide the filter and the bookmark."""

    is_sorted = False
    typed_pages = True  # rows of the page are this entity's rows (not so through a parent)
    BOOKMARK_KEYS = "replication_key_value"  # subclasses with their own bookmark name it here
    # State at least once a page: a killed run loses at most one page of progress.
    STATE_MSG_FREQUENCY = 1000
    # schema.record_converter already casts every Edm type; the SDK's per-property
    # conformance would do the same work again and cost half the run time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapExactOnline, entity: Entity) -> None:
        self.entity = entity
        self.routes_deletes = bool(entity.deleted_entity_type) and tap.routes_deletes
        super().__init__(tap=tap, name=entity.stream_name,
                         schema=build_schema(entity, tombstones=self.routes_deletes))
        self.primary_keys = list(entity.key)
        self.replication_key = entity.replication_key
        self.selected_by_default = entity.selected_by_default
        self.records_by_division: dict[int, int] = {}
        self._page_time = datetime.now(timezone.utc)
        self._state_for: tuple[dict | None, dict] = (None, {})

    @cached_property
    def _convert(self):
        # Built on first use: the catalog's selection is known by then, and the
        # converter keeps exactly the selected properties.
        keep = [name for name in self.schema["properties"] if self._is_selected(name)]
        return record_converter(self.entity, keep=[*keep, *self.primary_keys], trim=self.exact.trims_text,
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
                         trim=self.exact.trims_text, warn=self._off_midnight)

    @cached_property
    def _record_writer(self) -> RecordWriter | None:
        writer = self._tap.message_writer
        return RecordWriter(self.name, writer) if is_plain(self) and isinstance(writer, ExactMessageWriter) else None

    # -- HTTP plumbing: the shared session does auth, limits and retries --------

    @property
    def exact(self) -> TapExactOnline:
        return t.cast("TapExactOnline", self._tap)

    @property
    def url_base(self) -> str:
        return f"{self.exact.base_url}/api/v1/"

    @property
    def endpoint(self) -> Endpoint:
        return self.entity.source

    @property
    def path(self) -> str:
        return self.endpoint.path

    @property
    def requests_session(self) -> requests.Session:
        return self.exact.session

    @property
    def timeout(self):
        # The SDK passes its own 300 s to every page request; request_timeout governs them all.
        return self.exact.session.timeout

    @property
    def authenticator(self):
        return _pass_through  # ExactSession sets the bearer on every send, retries included

    def request_decorator(self, func):
        return func  # retries live in ExactSession, the one policy shared with the target

    def validate_response(self, response: requests.Response) -> None:
        return None  # ExactSession already turned every failure into an ExactError

    def get_new_paginator(self) -> ODataNextPaginator:
        return ODataNextPaginator(self.exact.base_url)

    @property
    def partitions(self) -> list[dict]:
        return [{"Division": d} for d in self.exact.divisions()]

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        if page.next_page_token:
            return HTTPRequest(url=page.next_page_token)
        division = t.cast(dict, page.stream_context)["Division"]
        params = self.query_options(page.stream_context or {})
        return HTTPRequest(url=f"{self.url_base}{self.endpoint.url_path(division)}?{query_string(params)}")

    def select_fields(self, endpoint: Endpoint | None = None) -> list[str]:
        """Selected properties that the endpoint serves (bulk demands ``$select``)."""
        endpoint = endpoint or self.endpoint
        served = {f.name for f in endpoint.scalar_fields}
        return [name for name in self.schema["properties"] if name in served and self._is_selected(name)]

    def _is_selected(self, name: str) -> bool:
        return self.mask.get(("properties", name), True)

    def query_options(self, context: dict) -> dict[str, str]:
        return {"$select": ",".join(self.select_fields())}

    def request_records(self, context: dict | None) -> t.Iterable[dict]:
        """Pages in order, each next page fetched while this one is processed.

        Exact's next link is in the page itself, so the following request can
        be on the wire while the records of this page are converted and
        written: the wait for Exact overlaps our own work. One page ahead at
        most; a failure of the page ahead (a budget stop included) surfaces
        only once the records before it were emitted.
        """
        paginator = self.get_new_paginator()
        typed = self._typed

        def fetch() -> t.Any:
            request = self._prepare_request(context=context, page=paginator)
            if typed is not None:
                request.exact_decode = typed.decode  # type: ignore[attr-defined]  # read by ExactSession
            return ahead.submit(self._request, request, context)

        with self.get_http_request_counter() as counter, ThreadPoolExecutor(1, "exact-page") as ahead:
            counter.with_context(context)
            pending = fetch()
            while pending is not None:
                response = pending.result()
                self._page_time = datetime.now(timezone.utc)
                counter.increment()
                paginator.advance(response)
                pending = None if paginator.finished else fetch()
                yield from self.parse_response(response)

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        payload = getattr(response, "exact_payload", None) or response.json()
        try:
            return pages.rows(payload)
        except ValueError as exc:
            raise ExactError(f"{self.path}: unexpected answer from Exact ({exc})") from None

    def post_process(self, row: dict, context: dict | None = None) -> dict | None:
        division = t.cast(dict, context)["Division"]
        self.records_by_division[division] = self.records_by_division.get(division, 0) + 1
        if row.__class__ is not dict:
            return t.cast(TypedRows, self._typed).convert(row, division)
        return self._convert(row, division)

    def _write_record_message(self, record: dict) -> None:
        writer = self._record_writer
        if writer is None:  # stream maps or flattening configured: the SDK's full path
            super()._write_record_message(record)
            return
        writer.write(record, time_extracted=self._page_time, version=self._stream_version)
        self.state_manager.is_flushed = False

    # -- Budget stops and deletions --------------------------------------------

    def get_records(self, context: dict | None) -> t.Iterable[dict]:
        division = t.cast(dict, context)["Division"]
        if self.exact.division_stopped(division):
            self.exact.note_unfinished(division, self.name)
            return
        first_read = self.get_context_state(context).get("replication_key_value") is None
        try:
            if self.routes_deletes:
                self.exact.deletions.begin(self, t.cast(dict, context))
            yield from self.read_rows(context)
            if first_read and not self.records_by_division.get(division):
                self.exact.empty_reads.check(division, self.endpoint.path, self.name)  # forbidden, or empty?
            if self.routes_deletes:
                yield from self.exact.deletions.tombstones(self, division)
        except (DailyBudgetExhausted, EndpointBlocked, ExactAPIError) as exc:
            if isinstance(exc, DailyBudgetExhausted):
                self.exact.stop_division(division, self.name, exc)
            else:
                self.exact.fail_stream(division, self.name, exc)
            if not self.is_sorted:
                # Rows of an unsorted stream arrive in key order: promoting the
                # highest value seen would skip the rows not read yet.
                self.get_context_state(context).pop("progress_markers", None)

    def read_rows(self, context: dict | None) -> t.Iterable[dict]:
        return super().get_records(context)

    # -- Per-record bookkeeping, trimmed to what this tap uses ----------------

    def _process_record(self, record: dict, child_context: dict | None = None,
                        partition_context: dict | None = None) -> None:
        # The converter already set Division (the only partition key) and no
        # stream has children: the SDK's per-record context merge has no work.
        if self.child_streams:
            super()._process_record(record, child_context, partition_context)

    def _increment_stream_state(self, latest_record: dict, *, context: dict | None = None) -> None:
        key = self.replication_key
        if not key:
            return  # nothing to bookmark (the SDK would do nothing either)
        if latest_record.__class__ is dict:
            if "_sdc_deleted_at" in latest_record:
                return  # a tombstone is not a newer version of the data: it must not move the bookmark
            new = latest_record.get(key)
        else:
            new = getattr(latest_record, key)  # a typed row (pages.py)
        if self.is_sorted:
            # The SDK's sorted increment, without looking the partition up per record.
            if self._state_for[0] is not context:
                self._state_for = (context, self.get_context_state(context))
            state = self._state_for[1]
            old = state.get("replication_key_value")
            if new is not None and (old is None or (old.__class__ is new.__class__ and new >= old)):
                state["replication_key"] = key
                state["replication_key_value"] = new
                return
        # Unsorted progress markers, and the SDK's own errors: it reads only the key.
        super()._increment_stream_state({key: new}, context=context)
