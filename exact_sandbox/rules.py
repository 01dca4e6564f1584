"""Entity rules Exact enforces beyond the metadata: documents, attachments, account codes.

Everything else about writes is generic (payload.py); these are the few places
where Exact checks relations or reshapes values, and the target relies on them.
"""

from __future__ import annotations

from typing import Any

from .payload import PayloadError
from .store import Division

DOCUMENTS = "documents/Documents"
ATTACHMENTS = "documents/DocumentAttachments"
DOCUMENT_TYPES = "documents/DocumentTypes"
ACCOUNTS = "crm/Accounts"
RIGHTS_PATH = "users/UserHasRights"


def before_write(division: Division, group_key: str, key: Any, values: dict[str, Any], *, creating: bool,
                 knobs: Any, base_url: str) -> bytes | None:
    """Check and complete ``values`` in place; returns attachment bytes to keep aside, if any."""
    blob = None
    for name, value in list(values.items()):
        if isinstance(value, bytes):
            if len(value) > knobs.max_binary_bytes:
                raise PayloadError(f"The file is too large: {len(value)} bytes. The maximum size is "
                                   f"{knobs.max_binary_bytes} bytes (10 MB).", knobs.binary_too_large_status)
            blob = value
            values[name] = None  # binaries are never read back through the API (Url instead)
    normalize(group_key, values, knobs)
    if values.get("Code") and group_key in _listed(knobs.unique_codes):
        _unique_code(division, group_key, key, values["Code"], knobs)
    if group_key == DOCUMENTS and "Type" in values:
        _document_type(division, values)
    if group_key == DOCUMENTS and values.get("Account"):
        _denormalize_account(division, values)
    if group_key == ATTACHMENTS and creating:
        _attachment(division, values, blob)
        values["Url"] = f"{base_url}/docs/SysAttachment.aspx?ID={key}&_Division_={division.code}"
    return blob


def _listed(text: str) -> set[str]:
    return {part.strip() for part in str(text or "").split(",") if part.strip()}


def _unique_code(division: Division, group_key: str, key: Any, code: Any, knobs: Any) -> None:
    """Exact refuses a second record with the same code: HTTP 500, in the user's language."""
    table = division.table(group_key)
    slot = table.group.index["Code"]
    wanted = str(code).strip().casefold()
    for row_key, row in table.rows.items():
        if row_key != key and str(row[slot] or "").strip().casefold() == wanted:
            raise PayloadError("Gegeven bestaat reeds.", knobs.business_refusal_status)


# Where a record of these entities is used, Exact refuses to delete it (child entity, its reference).
IN_USE = {ACCOUNTS: (("crm/Contacts", "Account", "Contacts"), (DOCUMENTS, "Account", "Documents"))}


def before_delete(division: Division, group_key: str, key: Any, knobs: Any) -> None:
    """``Can't delete: Account 58 - Used in: Contacts`` (HTTP 500), as Exact answers."""
    used = []
    for child, reference, label in IN_USE.get(group_key, ()):
        table = division.table(child)
        slot = table.group.index.get(reference)
        if slot is not None and any(row[slot] == key for row in table.rows.values()):
            used.append(label)
    if used:
        row = division.table(group_key).rows.get(key)
        code = str(row[division.table(group_key).group.index["Code"]]).strip() if row else key
        raise PayloadError(f"Can't delete: Account {code} - Used in: {', '.join(used)}",
                           knobs.business_refusal_status)


def has_rights(knobs: Any, path: str, group_key: str) -> bool:
    forbidden = _listed(knobs.no_rights)
    return path not in forbidden and group_key not in forbidden


def normalize(group_key: str, values: dict[str, Any], knobs: Any) -> None:
    """Reshaping Exact does on any write, the admin API's included."""
    if group_key == ACCOUNTS and knobs.pad_account_codes and isinstance(values.get("Code"), str):
        values["Code"] = values["Code"].strip().rjust(18)


def _document_type(division: Division, values: dict[str, Any]) -> None:
    table = division.table(DOCUMENT_TYPES)
    index = table.group.index
    row = table.rows.get(values["Type"])
    if row is None:
        raise PayloadError(f"Document type {values['Type']} does not exist.")
    if not row[index["DocumentIsCreatable"]]:
        raise PayloadError(f"Documents of type {values['Type']} ({row[index['Description']]}) cannot be created.")
    values["TypeDescription"] = row[index["Description"]]


def _denormalize_account(division: Division, values: dict[str, Any]) -> None:
    table = division.table(ACCOUNTS)
    row = table.rows.get(values["Account"])
    if row is None:
        raise PayloadError(f"Account {values['Account']} does not exist.")
    index = table.group.index
    values["AccountCode"] = row[index["Code"]]
    values["AccountName"] = row[index["Name"]]


def _attachment(division: Division, values: dict[str, Any], blob: bytes | None) -> None:
    if values.get("Document") not in division.table(DOCUMENTS).rows:
        raise PayloadError(f"Document {values.get('Document')} does not exist.")
    values["FileSize"] = float(len(blob or b""))


def after_insert(division: Division, group_key: str, key: Any, blob: bytes | None) -> None:
    if group_key == ATTACHMENTS:
        division.attachments[key] = blob or b""


def attachment_bytes(division: Division, key: str) -> bytes | None:
    """Uploaded bytes, or stand-in bytes of the generated attachment's FileSize."""
    if key in division.attachments:
        return division.attachments[key]
    table = division.table(ATTACHMENTS)
    row = table.rows.get(key)
    if row is None:
        return None
    size = int(row[table.group.index["FileSize"]] or 0)
    seed = f"%PDF-1.4 sandbox attachment {key}\n".encode()
    return (seed * (size // len(seed) + 1))[:size]
