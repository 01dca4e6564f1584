"""Documents and attachments: a document's files are added after the document; the
``document_attachments`` stream adds files to documents named by ID or by Subject.

Exact cannot update an attachment: a file already there (same name and size, and when the ledger
knows it, same content) is skipped; a changed file is added next to the old one, with a WARNING.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from exactonline_api.errors import EndpointBlocked, ExactAPIError
from exactonline_api.registry import endpoints
from target_exactonline.attachments import AttachmentSource
from target_exactonline.connector import ExactWriter
from target_exactonline.fields import BadValue, key_part
from target_exactonline.ledger import MAX_FILE_VERSIONS, record_key
from target_exactonline.records import Item, Tally
from target_exactonline.upsert import BaseUpserter, EntityUpserter

LOG = logging.getLogger("target_exactonline.documents")

ATTACHMENTS_PATH = "documents/DocumentAttachments"
_ATTACHMENT_SELECT = ("ID", "Document", "FileName", "FileSize")


def _size_of(row: dict) -> int | None:
    try:
        return int(round(float(row.get("FileSize"))))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _guid_key(value: Any) -> str:
    return str(uuid.UUID(str(value)))


class AttachmentWriter:
    """Adds files to documents; a file already there (same name and size) is skipped."""

    def __init__(self, writer: ExactWriter, tally: Tally) -> None:
        self.writer = writer
        self.tally = tally
        self.endpoint = endpoints()[ATTACHMENTS_PATH]
        self.document_field = self.endpoint.field("Document")
        self.name_field = self.endpoint.field("FileName")

    def existing(self, division: int, document_ids: Iterable[Any]) -> dict[str, list[dict]]:
        """The attachments of these documents (name, size, ID): one lookup per URL-sized chunk."""
        ids = [_guid_key(d) for d in document_ids if d]
        by_document: dict[str, list[dict]] = {d: [] for d in ids}
        if not ids:
            return by_document
        rows = self.writer.find(self.endpoint, division, [self.document_field],  # type: ignore[list-item]
                                [(d,) for d in ids], _ATTACHMENT_SELECT)
        for row in rows:
            by_document.setdefault(_guid_key(row["Document"]), []).append(row)
        return by_document

    def add(self, division: int, document_id: Any, source: AttachmentSource, present: list[dict],
            describe: str, known: Collection[Sequence] | None = None) -> tuple[bool, Any]:
        """Upload ``source`` unless it is in ``present`` (updated in place).

        ``known``: (size, SHA-256) of the contents the target uploaded, or found, under this file name
        on this document in earlier runs (from the ledger). With it, a file of the same name and size
        but another content is a changed file; without it, name and size decide.
        Returns (uploaded, the attachment's ID in Exact when known).
        """
        name = source.file_name.casefold()
        same_name = [row for row in present if str(row.get("FileName") or "").casefold() == name]
        same_size = [row for row in same_name if _size_of(row) == source.size]
        versions = _versions(known)
        if same_size and (not versions or (source.size, source.sha256) in versions):
            self.tally.attachments_skipped += 1
            LOG.debug("%s: attachment %s is already there; skipped", describe, source.describe())
            return False, same_size[-1].get("ID")
        if same_size:
            LOG.warning("%s: attachment %r changed: same name and size (%d bytes), but other content than the "
                        "target put there before (SHA-256 now %s..., before %s...). Exact cannot update "
                        "attachments, so the new file is added as another attachment next to the old one",
                        describe, source.file_name, source.size, source.sha256[:12],
                        ", ".join(sorted(sha[:12] for size, sha in versions if size == source.size)))
        elif same_name:
            sizes = ", ".join(str(_size_of(row)) for row in same_name)
            LOG.warning("%s: attachment %r changed (now %d bytes, in Exact %s bytes). Exact cannot update "
                        "attachments, so the new file is added as another attachment next to the old one",
                        describe, source.file_name, source.size, sizes)
        ident = None
        if self.dry_run:
            LOG.info("%s: (dry run) attachment %s would be added", describe, source.describe())
        else:
            ids = {str(row.get("ID")) for row in present}
            body = {"Document": str(document_id), "FileName": source.file_name,
                    "Attachment": source.content_base64()}
            what = f"{describe}: attachment {source.describe()}"
            row = self.writer.create(self.endpoint, division, body, describe=what,
                                     recover=lambda: self._find_new(division, document_id, source, ids))
            ident = row.get("ID")
            present.append({"ID": ident, "Document": str(document_id), "FileName": source.file_name,
                            "FileSize": source.size})
            LOG.info("%s: attachment %s added", describe, source.describe())
        self.tally.attachments_created += 1
        return True, ident

    @property
    def dry_run(self) -> bool:
        return self.writer.dry_run

    def _find_new(self, division: int, document_id: Any, source: AttachmentSource,
                  known: set[str]) -> dict | None:
        rows = self.writer.find(self.endpoint, division, [self.document_field, self.name_field],  # type: ignore
                                [(_guid_key(document_id), source.file_name)], _ATTACHMENT_SELECT)
        for row in rows:
            if (str(row.get("ID")) not in known and _size_of(row) == source.size
                    and str(row.get("FileName") or "").casefold() == source.file_name.casefold()):
                return row
        return None


def _versions(known: Collection[Sequence] | None) -> set[tuple[int, str]]:
    out = set()
    for version in known or ():
        try:
            out.add((int(version[0]), str(version[1])))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def known_files(item: Item) -> dict[str, list[list]]:
    """The contents per file name the ledger remembers for this record (copied, to be extended)."""
    files = (item.ledger_entry.extra.get("files") if item.ledger_entry else None) or {}
    if not isinstance(files, dict):
        return {}
    return {str(name): [list(v) for v in versions if isinstance(v, (list, tuple)) and len(v) == 2]
            for name, versions in files.items() if isinstance(versions, list)}


def remember_file(files: dict[str, list[list]], source: AttachmentSource) -> None:
    """Note that ``source``'s content is now under its name on the record's document in Exact."""
    version = [source.size, source.sha256]
    versions = [v for v in files.get(source.file_name.casefold(), []) if v != version]
    files[source.file_name.casefold()] = (versions + [version])[-MAX_FILE_VERSIONS:]


class DocumentsUpserter(EntityUpserter):
    """Documents upsert on their natural key; then their files are added (one lookup per batch)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attachments = AttachmentWriter(self.writer, self.tally)

    def unchanged_by_ledger(self, item: Item) -> None:
        super().unchanged_by_ledger(item)
        self.tally.attachments_skipped += len(item.attachments)

    def written(self, division: int, item: Item) -> None:
        if not item.attachments:  # else once its files are there too (after_division)
            super().written(division, item)

    def after_division(self, division: int, items: list[Item]) -> None:
        with_files = [i for i in items if i.attachments and i.row is not None]
        if not with_files:
            return
        earlier = [i.row[self.pk] for i in with_files  # type: ignore[index]
                   if i.outcome != "created" and i.row.get(self.pk)]  # type: ignore[union-attr]
        present: dict[str, list[dict]] = {}
        if not self.guarded(with_files, lambda: present.update(self.attachments.existing(division, earlier)),
                            "the lookup of its attachments", ATTACHMENTS_PATH):
            return
        for item in with_files:
            document_id = item.row.get(self.pk)  # type: ignore[union-attr]
            if not document_id:  # dry run: the document would be new, so would all its files
                for source in item.attachments:
                    LOG.info("%s: (dry run) attachment %s would be added", self.describe(item), source.describe())
                self.tally.attachments_created += len(item.attachments)
                continue
            files = present.setdefault(_guid_key(document_id), [])
            item.files = known_files(item)
            for source in item.attachments:
                if self.refused(item, ATTACHMENTS_PATH):
                    break
                try:
                    self.attachments.add(division, document_id, source, files, self.describe(item),
                                         known=item.files.get(source.file_name.casefold()))
                except BadValue as exc:
                    self.reject(item, f"attachment {source.file_name!r}: {exc}")
                    break
                except (ExactAPIError, EndpointBlocked) as exc:
                    self.handle_exact_error(item, exc, f"attachment {source.file_name!r}", ATTACHMENTS_PATH)
                    break
                remember_file(item.files, source)
            else:
                EntityUpserter.written(self, division, item)


class AttachmentsUpserter(BaseUpserter):
    """The ``document_attachments`` stream: files for documents named by ID or by Subject."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attachments = AttachmentWriter(self.writer, self.tally)
        self.documents = endpoints()["documents/Documents"]
        self._document_ids: dict[tuple[int, str], str] = {}

    def key_of(self, item: Item) -> dict[str, Any] | None:
        key = {}
        if item.values.get("Document"):
            key["Document"] = item.values["Document"]
        elif item.document_subject:
            key["DocumentSubject"] = item.document_subject
        if item.attachments:
            key["FileName"] = item.attachments[0].file_name
        return key or None

    def describe(self, item: Item) -> str:
        document = item.values.get("Document") or f"Subject={item.document_subject!r}"
        return f"{self.stream} document {document} (division {item.division})"

    def ledger_identity(self, item: Item) -> tuple[str, Any] | None:
        source = item.attachments[0]
        document = (("Document", key_part("Edm.Guid", item.values["Document"])) if item.values.get("Document")
                    else ("DocumentSubject", key_part("Edm.String", item.document_subject)))
        key = record_key([document, ("FileName", source.file_name.casefold())])
        return key, {"endpoint": ATTACHMENTS_PATH, "document": list(document), "file": source.fingerprint()}

    def unchanged_by_ledger(self, item: Item) -> None:
        super().unchanged_by_ledger(item)
        self.tally.attachments_skipped += 1

    def process_division(self, division: int, items: list[Item]) -> None:
        if not self.guarded(items, lambda: self._resolve_subjects(division, items), "the lookup of its document",
                            self.documents.path):
            return
        live = [i for i in items if not i.rejected]
        present: dict[str, list[dict]] = {}
        if not self.guarded(live, lambda: present.update(self.attachments.existing(
                division, {i.values["Document"] for i in live})), "the lookup of the attachments"):
            return
        for item in live:
            if self.refused(item):
                continue
            files = present.setdefault(_guid_key(item.values["Document"]), [])
            source = item.attachments[0]
            item.files = known_files(item)
            try:
                uploaded, ident = self.attachments.add(division, item.values["Document"], source, files,
                                                       self.describe(item),
                                                       known=item.files.get(source.file_name.casefold()))
                if uploaded:
                    item.outcome = "created"
                    self.tally.created += 1
                else:
                    item.outcome = "unchanged"
                    self.tally.unchanged += 1
                remember_file(item.files, source)
                self.settle(division, item, ident)
            except BadValue as exc:
                self.reject(item, f"attachment {source.file_name!r}: {exc}")
            except (ExactAPIError, EndpointBlocked) as exc:
                self.handle_exact_error(item, exc)

    def _resolve_subjects(self, division: int, items: list[Item]) -> None:
        wanted = [i for i in items if not i.values.get("Document")]
        subject_field = self.documents.field("Subject")
        missing = {key_part("Edm.String", i.document_subject): i.document_subject for i in wanted
                   if (division, key_part("Edm.String", i.document_subject)) not in self._document_ids}
        too_long: set[str] = set()
        if missing:
            found: dict[str, list[str]] = {}
            for row in self.writer.find(self.documents, division, [subject_field],  # type: ignore[list-item]
                                        [(s,) for s in missing.values()], ["ID", "Subject"],
                                        too_long=lambda key, _: too_long.add(key_part("Edm.String", key[0]))):
                found.setdefault(key_part("Edm.String", row.get("Subject")), []).append(str(row["ID"]))
            for subject, ids in found.items():
                self._document_ids[(division, subject)] = ids[0] if len(ids) == 1 else ""
        for item in wanted:
            subject = key_part("Edm.String", item.document_subject)
            document = self._document_ids.get((division, subject))
            if subject in too_long:
                self.reject(item, f"DocumentSubject of {len(str(item.document_subject))} characters is too long to "
                                  "look up in Exact; name the Document by its ID")
            elif document is None:
                self.reject(item, f"no document with Subject {item.document_subject!r} in division {division}")
            elif document == "":
                self.reject(item, f"several documents have Subject {item.document_subject!r} in division "
                                  f"{division}; name the Document by its ID")
            else:
                item.values["Document"] = document

