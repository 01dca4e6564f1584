"""Attachment content from a record: inline base64 or a file below ``attachments_dir``.

Everything that can be wrong with a file is found before anything is sent: a path outside the
folder, a missing file, invalid base64, an empty file, more than Exact's 10 MB. Files are only
opened when they are uploaded, so a batch of documents does not hold every PDF in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from target_exactonline.fields import BadValue, clean_base64, shown, squash

# Exact: "POST ≤ 10.0 MB of binary size; the base64 inflation does not count" (REFERENCE §8.4).
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# But a whole request may not exceed 38 MB on the Dutch and Belgian sites and 9.5 MB elsewhere, and
# base64 makes 4 bytes of 3: outside nl/be a file can be at most about 7.1 MB.
_MESSAGE_LIMITS = {"nl": 38 * 1024 * 1024, "be": 38 * 1024 * 1024}
_OTHER_MESSAGE_LIMIT = int(9.5 * 1024 * 1024)
_BODY_OVERHEAD = 4096  # the JSON around the base64: Document, FileName, quotes


def attachment_limit(country: str | None) -> int:
    """Largest file (bytes) one POST can carry on that country's site."""
    message = _MESSAGE_LIMITS.get((country or "nl").lower(), _OTHER_MESSAGE_LIMIT)
    return min(MAX_ATTACHMENT_BYTES, (message - _BODY_OVERHEAD) // 4 * 3)

_CONTENT_KEYS = ("attachment", "content", "base64", "data", "filecontent", "filedata")
_PATH_KEYS = ("path", "filepath", "file", "attachmentpath")
_NAME_KEYS = ("filename", "name")


@dataclass
class AttachmentSource:
    """One file to attach: its name, its decoded size, and where its bytes come from."""

    file_name: str
    size: int
    path: Path | None = None
    base64_text: str | None = None
    _sha256: str | None = field(default=None, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        """SHA-256 of the bytes (hex); a file is read in pieces, never held whole for this."""
        if self._sha256 is None:
            if self.base64_text is not None:
                self._sha256 = hashlib.sha256(base64.b64decode(self.base64_text)).hexdigest()
            else:
                assert self.path is not None
                digest = hashlib.sha256()
                try:
                    with self.path.open("rb") as fh:
                        for block in iter(lambda: fh.read(1024 * 1024), b""):
                            digest.update(block)
                except OSError as exc:
                    raise BadValue(f"file {self.path.name!r} could not be read ({exc.strerror})") from None
                self._sha256 = digest.hexdigest()
        return self._sha256

    def content_base64(self) -> str:
        if self.base64_text is not None:
            return self.base64_text
        assert self.path is not None
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise BadValue(f"file {self.path.name!r} could not be read ({exc.strerror})") from None
        if len(data) != self.size or (self._sha256 is not None and hashlib.sha256(data).hexdigest() != self._sha256):
            raise BadValue(f"file {self.path.name!r} changed while the target ran")
        return base64.b64encode(data).decode("ascii")

    def fingerprint(self) -> list:
        """What the ledger keeps of a file: its name (as Exact compares it), size and content hash."""
        return [self.file_name.casefold(), self.size, self.sha256]

    def describe(self) -> str:
        return f"{self.file_name!r} ({self.size} bytes)"


def _check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise BadValue(f"{name!r} is {size} bytes ({size / 1024 / 1024:.1f} MB); Exact accepts at most "
                       f"{limit / 1024 / 1024:.1f} MB ({limit} bytes) per attachment")
    if size == 0:
        raise BadValue(f"{name!r} is empty")


def from_base64(file_name: str | None, text: Any, *, limit: int = MAX_ATTACHMENT_BYTES) -> AttachmentSource:
    if not file_name:
        raise BadValue("an inline (base64) attachment needs a FileName")
    try:
        cleaned, size = clean_base64(text)
    except BadValue as exc:
        raise BadValue(f"content of {file_name!r} {exc}") from None
    _check_size(file_name, size, limit)
    return AttachmentSource(file_name=file_name, size=size, base64_text=cleaned)


def from_path(base_dir: Path, relative: Any, file_name: str | None = None, *,
              limit: int = MAX_ATTACHMENT_BYTES) -> AttachmentSource:
    if not isinstance(relative, str) or not relative.strip():
        raise BadValue(f"attachment path {shown(relative)} is not a file path")
    root = base_dir.resolve()
    candidate = (root / relative.strip()).resolve()
    if candidate != root and root not in candidate.parents:
        raise BadValue(f"attachment path {relative!r} is outside attachments_dir")
    if not candidate.is_file():
        raise BadValue(f"attachment file {relative!r} not found in attachments_dir")
    size = os.stat(candidate).st_size
    name = file_name or candidate.name
    _check_size(name, size, limit)
    return AttachmentSource(file_name=name, size=size, path=candidate)


def from_spec(base_dir: Path, spec: Any, *, limit: int = MAX_ATTACHMENT_BYTES) -> AttachmentSource:
    """One entry of a record's attachment list: a path string or an object."""
    if isinstance(spec, str):
        return from_path(base_dir, spec, limit=limit)
    if not isinstance(spec, dict):
        raise BadValue(f"attachment {shown(spec)} is neither a path nor an object")
    by_key = {squash(k): v for k, v in spec.items()}
    name = next((by_key[k] for k in _NAME_KEYS if not _blank(by_key.get(k))), None)
    name = str(name).strip() if name is not None else None
    content = next((by_key[k] for k in _CONTENT_KEYS if not _blank(by_key.get(k))), None)
    path = next((by_key[k] for k in _PATH_KEYS if not _blank(by_key.get(k))), None)
    if content is not None and path is not None:
        raise BadValue(f"attachment {name or path!r} has both a path and inline content; give one")
    if content is not None:
        return from_base64(name, content, limit=limit)
    if path is not None:
        return from_path(base_dir, path, name, limit=limit)
    raise BadValue(f"attachment {name or shown(spec)} has neither a path nor base64 content")


def attachment_list(base_dir: Path, value: Any, *, limit: int = MAX_ATTACHMENT_BYTES) -> list[AttachmentSource]:
    """A record's ``Attachments``: a list (of paths or objects), or that list as JSON text (CSV taps)."""
    if _blank(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except ValueError:
                raise BadValue("Attachments is text but not a JSON list") from None
        else:
            value = [part for part in text.split(";") if part.strip()]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise BadValue(f"Attachments {shown(value)} is not a list")
    return [from_spec(base_dir, spec, limit=limit) for spec in value]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
