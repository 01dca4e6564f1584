"""singer-sdk glue: one BatchSink per stream, each batch handed to its upserter (upsert.py, documents.py).

Records are not validated against the upstream tap's JSON schema: a CSV tap's schema says little,
and the SDK would stop the run at the first bad record. Each record is checked against Exact's
metadata instead, and a bad one goes to the reject file while the others go on.
"""

from __future__ import annotations

import typing as t

from singer_sdk.sinks import BatchSink

from exactonline_api.compat import override
from exactonline_api.errors import ConfigError
from exactonline_api.registry import Endpoint, Entity, entities
from target_exactonline.attachments import attachment_limit
from target_exactonline.documents import AttachmentsUpserter, DocumentsUpserter
from target_exactonline.fields import squash
from target_exactonline.shape import ATTACHMENTS, DOCUMENTS, ENTITY, RecordShaper
from target_exactonline.upsert import BaseUpserter, EntityUpserter

if t.TYPE_CHECKING:
    from singer_sdk import Target

# The private singer-sdk members ExactSink overrides (each with its reason at the override), with the
# signatures they were written against: tests/test_sdk_hooks.py fails when the pinned SDK changes one.
# singer-sdk offers no public hook to keep a record's values as sent, to leave the key check to
# us, or to stop it logging every batch context (attachments' base64 included) at DEBUG.
PRIVATE_SDK_MEMBERS = {
    "_validate_and_parse": "(self, record: 'dict') -> 'dict'",
    "_singer_validate_message": "(self, record: 'dict') -> 'None'",
    "_after_process_record": "(self, context: 'dict') -> 'None'",
}


class ExactTarget(t.Protocol):
    """What the sinks use of the target: target.py imports this module, never the reverse."""

    config: t.Mapping[str, t.Any]
    writer: t.Any
    rejects: t.Any
    ledger: t.Any
    attachments_dir: t.Any
    account_codes: t.Any
    refusals: t.Any

    def register_sink(self, sink: ExactSink) -> None: ...

    def drain_earlier(self, sink: ExactSink) -> None: ...

DEFAULT_BATCH_SIZE = 100
# A batch of documents with inline base64 is drained early, whatever its row count.
MAX_BATCH_TEXT = 64 * 1024 * 1024
DEFAULT_NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "documents": ("Subject",),
    "accounts": ("Code",),
    "contacts": ("Email",),
    "items": ("Code",),
}


def entity_for_stream(stream: str) -> tuple[Entity, Endpoint]:
    """The tap's stream of that name (exact, else ignoring case and underscores) and its writable endpoint."""
    known = entities()
    entity = known.get(stream)
    if entity is None:
        wanted = squash(stream)
        entity = next((e for name, e in known.items() if squash(name) == wanted), None)
    if entity is None:
        raise ConfigError(f"stream {stream!r} is not an Exact entity; name streams like tap-exactonline's "
                          "(accounts, contacts, items, documents, document_attachments, ...), e.g. with "
                          "the CSV tap's table_name or a stream map")
    endpoint = entity.writable
    if endpoint is None:
        raise ConfigError(f"stream {stream!r}: Exact's API does not accept writes for {entity.stream_name} "
                          f"({entity.source.path} is read-only)")
    return entity, endpoint


def natural_key_for(stream: str, entity: Entity, endpoint: Endpoint, config: t.Mapping) -> tuple[str, ...]:
    configured = (config.get("natural_keys") or {}).get(stream)
    if configured is None:
        configured = (config.get("natural_keys") or {}).get(entity.stream_name)
    if isinstance(configured, str):
        configured = [configured]
    names = list(configured or DEFAULT_NATURAL_KEYS.get(entity.stream_name, ()))
    if not names:
        raise ConfigError(f"stream {stream!r} has no natural key: set natural_keys.{stream} to the field(s) that "
                          f"identify an existing record (e.g. [\"Code\"]); without one the target cannot tell "
                          f"an update from a duplicate")
    by_squash = {squash(f.name): f.name for f in endpoint.scalar_fields}
    resolved = []
    for name in names:
        found = name if endpoint.has(name) else by_squash.get(squash(str(name)))
        if found is None:
            raise ConfigError(f"natural_keys.{stream}: {name!r} is not a field of {endpoint.path}")
        resolved.append(found)
    return tuple(resolved)


def build_upserter(target: ExactTarget, stream: str) -> BaseUpserter:
    entity, endpoint = entity_for_stream(stream)
    common: dict[str, t.Any] = {
        "writer": target.writer, "stream": stream, "endpoint": endpoint, "rejects": target.rejects,
        "default_division": target.config.get("default_division"), "ledger": target.ledger,
        "verify_unchanged": bool(target.config.get("verify_unchanged")),
        "accounts": target.account_codes, "refusals": target.refusals,
        "resend_refused": bool(target.config.get("resend_refused"))}
    shaping: dict[str, t.Any] = {
        "attachments_dir": target.attachments_dir, "read_only": [f.name for f in entity.fields],
        "attachment_limit": attachment_limit(target.config.get("country"))}
    if entity.stream_name == "document_attachments":
        shaper = RecordShaper(stream, endpoint, kind=ATTACHMENTS, **shaping)
        return AttachmentsUpserter(shaper=shaper, **common)
    natural_key = natural_key_for(stream, entity, endpoint, target.config)
    if entity.stream_name == "documents":
        shaper = RecordShaper(stream, endpoint, kind=DOCUMENTS, natural_key=natural_key, **shaping)
        return DocumentsUpserter(shaper=shaper, natural_key=natural_key, **common)
    shaper = RecordShaper(stream, endpoint, kind=ENTITY, natural_key=natural_key, **shaping)
    return EntityUpserter(shaper=shaper, natural_key=natural_key, **common)


def _text_size(value: t.Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_size(v) for v in value)
    return 0


class ExactSink(BatchSink):
    """Collects a batch of one stream; drains it through the stream's upserter."""

    def __init__(self, target: ExactTarget, stream_name: str, schema: dict,
                 key_properties: t.Sequence[str] | None) -> None:
        super().__init__(t.cast("Target", target), stream_name, schema, key_properties)
        self.exact_target = target
        self.upserter = build_upserter(target, stream_name)
        self._carries_files = isinstance(self.upserter, (DocumentsUpserter, AttachmentsUpserter))
        self._pending_text = 0
        target.register_sink(self)

    @property
    @override
    def max_size(self) -> int:
        size = self.config.get("batch_size_rows") or self.config.get("batch_size") or DEFAULT_BATCH_SIZE
        return max(1, int(size))

    @property
    @override
    def is_full(self) -> bool:
        return super().is_full or self._pending_text >= MAX_BATCH_TEXT

    # Validation happens against Exact's metadata, record by record, into the reject file.
    @override
    def get_validator(self):  # noqa: ANN201
        return None

    @override
    def _validate_and_parse(self, record: dict) -> dict:
        return record  # keep the values as sent: dates stay text, interpreted in Exact's time zone

    @override
    def _singer_validate_message(self, record: dict) -> None:
        return None  # a record without the tap's key properties is our natural-key check's business

    @override
    def _after_process_record(self, context: dict) -> None:
        pass  # the SDK would log the whole batch context at debug level: every record, base64 included

    @override
    def process_record(self, record: dict, context: dict) -> None:
        super().process_record(record, context)
        if self._carries_files:
            self._pending_text += _text_size(record)

    @override
    def process_batch(self, context: dict) -> None:
        # Records of streams that arrived earlier go first (accounts before the contacts naming them,
        # documents before their attachments).
        self.exact_target.drain_earlier(self)
        records = context.get("records", [])
        self._pending_text = 0
        rejected_before = self.upserter.tally.rejected
        self.upserter.process(records)
        self.tally_record_written(len(records) - (self.upserter.tally.rejected - rejected_before))
