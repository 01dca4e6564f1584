"""A Singer record -> an :class:`~target_exactonline.writer.Item`: Exact field names and values.

Field names are matched to the endpoint's fields exactly, else ignoring case and underscores, so the
snake_case headers of a CSV tap (``first_name``, ``account_code``) meet Exact's ``FirstName`` and
``AccountCode``. Besides Exact's writable fields a record may carry:

* ``Division``: the division to write to (else ``default_division``);
* ``AccountCode``: on streams with a writable ``Account``, resolved to the account's GUID;
* on ``documents``: ``Attachments`` (a list of paths or of objects ``{"FileName", "Attachment"
  (base64) | "Path"}``, or that list as JSON text) and ``AttachmentPath`` (paths separated by ``;``);
* on ``document_attachments``: ``Document`` (GUID) or ``DocumentSubject``, ``FileName``, and
  ``Attachment`` (base64) or ``Path``.

Read-only fields (a record that came from tap-exactonline has many) and fields starting with ``_``
(Singer and tap metadata) are ignored; unknown fields are reported once per stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exactonline_api.datekinds import is_calendar_date
from exactonline_api.registry import Endpoint, Field
from target_exactonline import attachments as files
from target_exactonline.fields import BadValue, is_empty, squash, to_wire
from target_exactonline.records import Item, RecordRejected

LOG = logging.getLogger("target_exactonline.shape")

ENTITY, DOCUMENTS, ATTACHMENTS = "entity", "documents", "attachments"
_ATTACHMENT_LIST_NAMES = frozenset({"attachments"})
_ATTACHMENT_PATH_NAMES = frozenset({"attachmentpath", "attachmentpaths", "attachmentfile", "attachmentfiles"})


class RecordShaper:
    def __init__(
        self,
        stream: str,
        endpoint: Endpoint,
        *,
        kind: str = ENTITY,
        natural_key: tuple[str, ...] = (),
        attachments_dir: Path | None = None,
        read_only: Iterable[str] = (),
        attachment_limit: int = files.MAX_ATTACHMENT_BYTES,
    ) -> None:
        self.stream = stream
        self.endpoint = endpoint
        self.kind = kind
        self.natural_key = set(natural_key)
        self.attachments_dir = attachments_dir or Path.cwd()
        self.limit = attachment_limit
        self.by_name = {f.name: f for f in endpoint.scalar_fields}
        self.by_squash = {squash(f.name): f for f in endpoint.scalar_fields}
        account = endpoint.field("Account")
        self.resolves_account_code = bool(account and (account.post or account.put))
        self._reported: set[str] = set()
        # Fields the tap reads for this entity but the writable endpoint lacks (Timestamp, ...).
        self.read_only = {squash(name) for name in read_only}

    def field(self, name: str) -> Field | None:
        return self.by_name.get(name) or self.by_squash.get(squash(name))

    def __call__(self, record: dict) -> Item:
        item = Item(record=record)
        try:
            if self.kind == ATTACHMENTS:
                self._attachment_record(item, record)
            else:
                self._entity_record(item, record)
        except BadValue as exc:
            raise RecordRejected(str(exc)) from None
        return item

    # -- accounts, contacts, documents, ... -------------------------------------------------------------

    def _entity_record(self, item: Item, record: dict) -> None:
        unknown, ignored = [], []
        for name, value in record.items():
            if name.startswith("_"):
                continue
            key = squash(name)
            if key == "division":
                item.division = _division(value)
            elif key == "accountcode" and self.resolves_account_code:
                item.account_code = None if is_empty(value) else str(value).strip()
            elif self.kind == DOCUMENTS and key in _ATTACHMENT_LIST_NAMES:
                item.attachments.extend(files.attachment_list(self.attachments_dir, value, limit=self.limit))
            elif self.kind == DOCUMENTS and key in _ATTACHMENT_PATH_NAMES:
                if not is_empty(value):
                    paths = value if isinstance(value, list) else str(value).split(";")
                    item.attachments.extend(files.from_path(self.attachments_dir, p, limit=self.limit)
                                            for p in paths if p.strip())
            else:
                fld = self.field(name)
                if fld is None and key in self.read_only:
                    ignored.append(name)
                elif fld is None:
                    unknown.append(name)
                elif not (fld.post or fld.put) and fld.name not in self.natural_key:
                    ignored.append(fld.name)
                else:
                    try:
                        item.values[fld.name] = to_wire(fld.edm, value, calendar=is_calendar_date(fld.name))
                    except BadValue as exc:
                        raise BadValue(f"{fld.name}: {exc}") from None
        self._report(unknown, ignored)
        names = [s.file_name.casefold() for s in item.attachments]
        if len(names) != len(set(names)):
            raise BadValue("two attachments of this record have the same FileName")

    # -- document_attachments ---------------------------------------------------------------------------

    def _attachment_record(self, item: Item, record: dict) -> None:
        file_name = content = path = None
        unknown = []
        for name, value in record.items():
            if name.startswith("_"):
                continue
            key = squash(name)
            if key == "division":
                item.division = _division(value)
            elif key == "document":
                try:
                    item.values["Document"] = to_wire("Edm.Guid", value)
                except BadValue as exc:
                    raise BadValue(f"Document: {exc}") from None
            elif key in ("documentsubject", "subject"):
                item.document_subject = None if is_empty(value) else str(value)
            elif key == "filename":
                file_name = None if is_empty(value) else str(value).strip()
            elif key in ("attachment", "content", "base64", "data"):
                content = None if is_empty(value) else value
            elif key in ("path", "filepath", "file", "attachmentpath"):
                path = None if is_empty(value) else value
            elif self.field(name) is None and key not in self.read_only:
                unknown.append(name)
        self._report(unknown, [])
        if content is not None and path is not None:
            raise BadValue("the record has both Attachment (base64) and Path; give one")
        if content is not None:
            item.attachments.append(files.from_base64(file_name, content, limit=self.limit))
        elif path is not None:
            item.attachments.append(files.from_path(self.attachments_dir, path, file_name, limit=self.limit))
        else:
            raise BadValue("the record has neither Attachment (base64) nor Path")
        if not item.values.get("Document") and not item.document_subject:
            raise BadValue("the record names no document: give Document (its ID) or DocumentSubject")

    def _report(self, unknown: list[str], ignored: list[str]) -> None:
        new_unknown = [n for n in unknown if ("?" + n) not in self._reported]
        new_ignored = [n for n in ignored if ("-" + n) not in self._reported]
        if new_unknown:
            self._reported.update("?" + n for n in new_unknown)
            LOG.warning("%s: ignoring field(s) that %s does not have: %s", self.stream, self.endpoint.path,
                        ", ".join(new_unknown))
        if new_ignored:
            self._reported.update("-" + n for n in new_ignored)
            LOG.info("%s: ignoring read-only field(s): %s", self.stream, ", ".join(new_ignored))


def _division(value: Any) -> int | None:
    if is_empty(value):
        return None
    try:
        return to_wire("Edm.Int32", value)
    except BadValue:
        raise BadValue(f"Division {value!r} is not a division number") from None
