"""The record types of the target: one record on its way to Exact, and the counts per stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from target_exactonline.attachments import AttachmentSource
from target_exactonline.ledger import Entry


class RecordRejected(Exception):
    """This record cannot be written; ``reason`` goes to the reject file as it is."""

    def __init__(self, reason: str, *, not_sent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.not_sent = not_sent


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    attachments_created: int = 0
    attachments_skipped: int = 0
    merged: int = 0
    # Of ``unchanged``: records the ledger vouched for, without a call (logged, not in the summary).
    ledger_unchanged: int = 0
    # Of ``rejected``: records held back without a call because Exact would block their endpoint.
    not_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
               "rejected": self.rejected}
        if self.merged:
            out["merged_duplicates"] = self.merged
        if self.attachments_created or self.attachments_skipped:
            out["attachments_created"] = self.attachments_created
            out["attachments_skipped"] = self.attachments_skipped
        return out


@dataclass
class Item:
    """One record on its way to Exact."""

    record: dict
    division: int | None = None
    values: dict[str, Any] = field(default_factory=dict)
    account_code: str | None = None
    document_subject: str | None = None
    attachments: list[AttachmentSource] = field(default_factory=list)
    row: dict | None = None
    outcome: str | None = None
    rejected: bool = False
    # The write ledger: this record's key and fingerprint there, what it held before this run, and
    # what to keep there once Exact confirmed the record (attachments: the contents per file name).
    ledger_key: str | None = None
    fingerprint: str | None = None
    ledger_entry: Entry | None = None
    files: dict[str, list[list]] = field(default_factory=dict)
