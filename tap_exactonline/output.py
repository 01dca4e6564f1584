"""RECORD lines written straight from the converted row: the tap's hot path.

singer-sdk builds a message object per record, pops deselected properties,
runs every stream map and flushes stdout after each line. None of that does
work here when the stream has no map, no flattening and no conformance: the
converter already keeps exactly the selected properties.

Records are collected in one buffer and written a megabyte at a time. Every
other message (SCHEMA, STATE, ACTIVATE_VERSION) goes through
:class:`ExactMessageWriter`, which writes the collected records first: a
STATE line can never leave the process before the records it covers.
"""

from __future__ import annotations

import sys
import typing as t
from datetime import datetime

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.mapper import SameRecordTransform

from exactonline_api.compat import override

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream

_encoder = msgspec.json.Encoder()
_FLUSH_AT = 1 << 20


def is_plain(stream: Stream) -> bool:
    """True when the SDK's record pipeline would emit the record unchanged."""
    maps = stream.stream_maps
    if len(maps) != 1 or type(maps[0]) is not SameRecordTransform:
        return False
    only = maps[0]
    return only.stream_alias == stream.name and not (only.flattening_options and only.flattening_enabled)


class ExactMessageWriter(MsgSpecWriter):
    """The SDK's msgspec writer, plus the buffer of records not yet written."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = bytearray()

    def write_pending(self) -> None:
        if self.pending:
            sys.stdout.buffer.write(self.pending)
            self.pending.clear()

    @override
    def write_message(self, message: t.Any) -> None:
        self.write_pending()
        super().write_message(message)  # flushes stdout


class RecordWriter:
    """Encodes one stream's RECORD messages into the writer's pending buffer.

    Only the record itself is encoded per message; the envelope around it is
    bytes made once per page (its ``time_extracted``) and version.
    """

    def __init__(self, stream_name: str, writer: ExactMessageWriter) -> None:
        self._head = b'{"type":"RECORD","stream":' + _encoder.encode(stream_name) + b',"record":'
        self._writer = writer
        self._tail_for: tuple[datetime | None, int | None] = (None, None)
        self._tail = b""

    def write(self, record: dict, *, time_extracted: datetime, version: int | None) -> None:
        if self._tail_for != (time_extracted, version):
            versioned = b"" if version is None else b',"version":' + _encoder.encode(version)
            self._tail = versioned + b',"time_extracted":' + _encoder.encode(time_extracted) + b"}\n"
            self._tail_for = (time_extracted, version)
        pending = self._writer.pending
        pending += self._head
        _encoder.encode_into(record, pending, -1)
        pending += self._tail
        if len(pending) >= _FLUSH_AT:
            self._writer.write_pending()
