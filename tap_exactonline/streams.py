"""The four ways Exact lets us read an entity; which one a stream uses is data.

Every stream is an instance of one of these classes, built from its registry
entry by :func:`build_streams`. No class exists per entity.
"""

from __future__ import annotations

import typing as t
from datetime import datetime

from singer_sdk.helpers.types import Context

from exactonline_api.compat import override
from exactonline_api.registry import BULK, PARENT, STANDARD, SYNC, Endpoint, Entity
from exactonline_api.timeutil import exact_ms, filter_datetime, local_ms_to_utc, parse_iso_utc
from tap_exactonline.client import ExactStream, Prepared, Reading

if t.TYPE_CHECKING:
    from singer_sdk import Tap


class SyncStream(ExactStream):
    """``sync/...``: ``Timestamp gt NL``, ordered by Timestamp, 1,000 rows a page.

    Ordered rows make the bookmark exact after every record, so a killed run
    resumes at the first row it did not emit.
    """

    is_sorted = True

    def start_timestamp(self, context: dict) -> int:
        # The SDK offers start_date when there is no bookmark; a Timestamp is a
        # rowversion, not a date, so only a numeric bookmark counts here.
        bookmark = self.get_starting_replication_key_value(context)
        if bookmark is not None and str(bookmark).isdigit():
            return int(bookmark)
        start = self.reading.start_moment()
        if start is None:
            return 1  # Exact's documented first-run value
        return self.reading.api().sync_timestamp_at(context["Division"], self.endpoint.path, start)

    def query_options(self, context: dict) -> dict[str, str]:
        return {
            "$filter": f"Timestamp gt {self.start_timestamp(context)}L",
            "$select": ",".join(self.select_fields()),
        }


class DeletedStream(SyncStream):
    """``sync/Deleted`` as a raw log, with EntityType resolved to names.

    The log is read once per division per run (:mod:`tap_exactonline.deletes`)
    and shared with the entity streams that route it.
    """

    def __init__(self, tap: Tap, entity: Entity, reading: Reading) -> None:
        super().__init__(tap, entity, reading)
        self.schema["properties"].update({
            "EntityName": {"type": ["string", "null"], "description": "EntityType as Exact names it"},
            "StreamName": {"type": ["string", "null"], "description": "The tap stream the deletion belongs to"},
        })

    def prepare(self, context: dict) -> Prepared:
        return Prepared(since=self.start_timestamp(context))

    def read_pages(self, context: dict, prepared: Prepared) -> t.Iterator[list]:
        since = t.cast(int, prepared.since)
        yield [dict(row) for row in self.reading.deletions.rows(context["Division"], since)]

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        row = super().post_process(row, context)
        if row is not None:
            row.update(self.reading.deletions.describe(row.get("EntityType")))
        return row


class ModifiedStream(ExactStream):
    """``bulk/...`` (1,000 a page) or a standard endpoint (60 a page).

    Incremental on ``Modified`` when the entity has it. Rows come in key order,
    not Modified order, so the bookmark only moves when a partition completes.
    """

    def query_options(self, context: dict) -> dict[str, str]:
        options = {"$select": ",".join(self.select_fields())}
        since = self.modified_since(context)
        if since is not None:
            options["$filter"] = f"Modified gt {filter_datetime(since)}"
        return options

    def modified_since(self, context: dict) -> datetime | None:
        if not self.replication_key:
            return None
        bookmark = self.get_starting_replication_key_value(context)
        if bookmark:
            return parse_iso_utc(str(bookmark))
        return self.reading.start_moment()


class ParentStream(ExactStream):
    """Line collections without sync or bulk, read through the parent.

    One standard call returns 60 parents with all their lines (``$expand``),
    filtered on the parent's ``Modified``: never one call per parent. The
    bookmark (the parent's Modified) is kept in the partition state.
    """

    BOOKMARK = BOOKMARK_KEYS = "parent_modified"
    typed_pages = False  # a page holds parents, the lines are inside them

    @property
    def endpoint(self) -> Endpoint:
        return t.cast(Endpoint, t.cast(t.Any, self.entity.parent).parent)

    def query_options(self, context: dict) -> dict[str, str]:
        link = t.cast(t.Any, self.entity.parent)
        lines = [f"{link.navigation}/{name}" for name in self.select_fields(self.entity.standard)]
        options = {
            "$select": ",".join(["Modified", *lines]),
            "$expand": link.navigation,
        }
        bookmark = self.get_context_state(context).get(self.BOOKMARK)
        since = parse_iso_utc(bookmark) if bookmark else self.reading.start_moment()
        if since is not None:
            options["$filter"] = f"Modified gt {filter_datetime(since)}"
        return options

    def page_rows(self, payload: t.Any, prepared: Prepared) -> list:
        navigation = t.cast(t.Any, self.entity.parent).navigation
        lines: list = []
        for parent in super().page_rows(payload, prepared):
            modified = exact_ms(parent.get("Modified"))
            if modified is not None and (prepared.latest is None or modified > prepared.latest):
                prepared.latest = modified
            found = parent.get(navigation) or []
            if isinstance(found, dict):
                found = found.get("results") or []
            lines.extend(found)
        return lines

    def division_finished(self, context: dict) -> t.Iterable[dict]:
        prepared = self._prepared.get(context["Division"])
        if prepared is not None and prepared.latest is not None:
            self.get_context_state(context)[self.BOOKMARK] = local_ms_to_utc(prepared.latest).isoformat()
        return super().division_finished(context)


STREAM_CLASSES: dict[str, type[ExactStream]] = {
    SYNC: SyncStream, BULK: ModifiedStream, STANDARD: ModifiedStream, PARENT: ParentStream,
}


def stream_class(entity: Entity) -> type[ExactStream]:
    return DeletedStream if entity.source.path == "sync/Deleted" else STREAM_CLASSES[entity.api]
