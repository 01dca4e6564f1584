"""Every private singer-sdk member the tap overrides or calls, in one place, each with its reason.

singer-sdk gives no public hook for reading partitions side by side, for a
record path without per-record message objects, or for versioned resyncs, so
these few private members are used; ``tests/test_sdk_hooks.py`` fails when the
pinned SDK changes any of their signatures. Nothing outside this module touches
a private SDK member.
"""

from __future__ import annotations

import typing as t
from contextlib import closing
from datetime import datetime, timezone
from functools import cached_property

from singer_sdk.helpers.types import Context
from singer_sdk.streams import Stream

from exactonline_api.compat import override
from tap_exactonline.output import ExactMessageWriter, RecordWriter, is_plain
from tap_exactonline.parallel import END, ERROR, PAGE, START, DivisionJob, read_divisions

if t.TYPE_CHECKING:
    from tap_exactonline.progress import Progress

# The private SDK members used below, with the signatures they were written against
# (checked by tests/test_sdk_hooks.py).
PRIVATE_SDK_MEMBERS = {
    "_sync_records": "(self, context: 'types.Context | None' = None, *, write_messages: 'bool' = True) "
                     "-> 't.Generator[dict, t.Any, t.Any]'",
    "_write_record_message": "(self, record: 'types.Record') -> 'None'",
    "_increment_stream_state": "(self, latest_record: 'types.Record', *, context: 'types.Context | None' = None) "
                               "-> 'None'",
    "_write_starting_replication_value": "(self, context: 'types.Context | None') -> 'None'",
    "_write_state_message": "(self) -> 'None'",
    "_finalize_state": "(self, state: 'dict | None' = None) -> 'None'",
    "_check_max_record_limit": "(self, current_record_index: 'int') -> 'None'",
    "_write_activate_version_message": "(self, full_table_version: 'int') -> 'None'",
}


class StreamHooks(Stream):
    """The SDK's stream with its partition loop and record path replaced; see each member."""

    parallel_divisions = 1
    progress: Progress

    # What the stream provides (tap_exactonline.client.ExactStream).
    def division_job(self, context: dict) -> DivisionJob | None:
        raise NotImplementedError

    def division_started(self, context: dict, prepared: t.Any) -> None:
        raise NotImplementedError

    def division_finished(self, context: dict) -> t.Iterable[dict]:
        raise NotImplementedError

    def division_failed(self, context: dict, exc: BaseException) -> None:
        raise NotImplementedError

    def division_counted(self, context: dict, records: int) -> None:
        raise NotImplementedError

    # -- the partition loop ------------------------------------------------------------------

    @override
    def _sync_records(self, context: Context | None = None, *,
                      write_messages: bool = True) -> t.Generator[dict, t.Any, t.Any]:
        """Why: the SDK reads partitions one after another (meltano/sdk#2121), and Exact's
        limits and latency are per division, so a serial tap mostly waits.

        Kept from the SDK's loop: the starting replication value per partition, post_process,
        the record message, the per-partition bookmark increment, STATE every
        STATE_MSG_FREQUENCY records, the dry-run record limit, per-partition finalization
        (now when *that* division ends) and the final STATE. Changed: the divisions' pages
        come from reader threads (tap_exactonline.parallel) and may interleave; a division's
        own records and bookmark stay in its order, and every STATE is written after the
        records it covers (ExactMessageWriter writes pending records first).
        """
        contexts = [t.cast(dict, context)] if context is not None else list(self.partitions or [])
        record_counter = self.get_record_counter()
        timer = self.get_sync_timer()
        selected = self.selected
        limit = self.ABORT_AT_RECORD_COUNT
        index = 0
        for ctx in contexts:
            self._write_starting_replication_value(ctx)
        jobs = [job for ctx in contexts if (job := self.division_job(ctx)) is not None]
        # closing(): an error here must stop the readers now, not when the traceback is freed
        # (their threads would otherwise keep the process from exiting).
        events = closing(read_divisions(jobs, self.parallel_divisions, idle=self.progress.tick))
        with record_counter, timer, events as pages:
            for kind, ctx, value in pages:
                if kind == START:
                    self.division_started(ctx, value)
                    continue
                if kind == PAGE:
                    rows = value
                    self.page_time = datetime.now(timezone.utc)
                elif kind == END:
                    rows = self.division_finished(ctx)
                else:
                    self.division_failed(ctx, value)
                    rows = ()
                emitted = 0
                for row in rows:
                    if limit is not None:
                        self._check_max_record_limit(current_record_index=index)
                    record = self.post_process(row, ctx)
                    if record is None:
                        continue
                    if selected:
                        if write_messages:
                            self._write_record_message(record)
                        self._increment_stream_state(record, context=ctx)
                        if (index + 1) % self.STATE_MSG_FREQUENCY == 0 and write_messages:
                            self._write_state_message()
                        record_counter.increment()
                        emitted += 1
                        yield record
                    index += 1
                self.division_counted(ctx, emitted)
                if kind in (END, ERROR):
                    self._finalize_state(self.get_context_state(ctx))
                self.progress.tick()
        for ctx in contexts:  # divisions not read (stopped earlier): finalized as the SDK would
            if all(job.context is not ctx for job in jobs):
                self._finalize_state(self.get_context_state(ctx))
        if not context:
            self._finalize_state(self.stream_state)
        if write_messages:
            self._write_state_message()

    # -- the record path -----------------------------------------------------------------------

    @cached_property
    def _record_writer(self) -> RecordWriter | None:
        writer = self._tap.message_writer
        return RecordWriter(self.name, writer) if is_plain(self) and isinstance(writer, ExactMessageWriter) else None

    page_time: datetime = datetime.now(timezone.utc)  # time_extracted of the page being written
    _state_for: tuple[t.Any, dict] = (object(), {})  # (context, its state): a one-entry cache

    @override
    def _write_record_message(self, record: dict) -> None:
        """Why: the SDK builds a message object per record and runs conformance and maps
        that have no work here (tap_exactonline.output); stream maps still take its path."""
        writer = self._record_writer
        if writer is None:  # stream maps or flattening configured: the SDK's full path
            super()._write_record_message(record)
            return
        writer.write(record, time_extracted=self.page_time, version=self._stream_version)
        self.state_manager.is_flushed = False

    @override
    def _increment_stream_state(self, latest_record: t.Any, *, context: Context | None = None) -> None:
        """Why: typed rows are no dicts, a tombstone must not move the bookmark, and the
        sorted increment need not look the partition up per record."""
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

    # -- versioned resyncs (tap_exactonline.resync) ----------------------------------------------

    def begin_versioned_resync(self, version: int) -> None:
        """Every RECORD of this stream carries ``version`` from now on (the SDK's own field)."""
        self._stream_version = version

    def activate_version(self, version: int) -> None:
        """ACTIVATE_VERSION through the SDK (it honours stream maps), then unversioned records."""
        self._write_activate_version_message(version)
        self._stream_version = None
