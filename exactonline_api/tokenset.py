"""The token pair, the store interface every backend implements, and the rules both backends share:
what a stored document must look like, and which of several saved copies is the live one."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from exactonline_api.errors import ConfigError, ExactError
from exactonline_api.login_hint import auth_command
from exactonline_api.redact import register_secret

DEFAULT_STORE_DIR = ".tokens"
CRASH_ENV = "EXACT_TEST_CRASH_AT"
FORMAT = "tap-exactonline token store"
# Beside the store, the new tokens when the store itself could not be written (see TokenManager).
RECOVERY_SUFFIX = ".recovery"


def set_aside_note(where: object, store: str, restore: str) -> str:
    return (f"they are set aside in {where} (mode 0600) and used for the rest of this run. The next run takes them "
            f"over by itself once {store} can be written; to restore them by hand: {restore}")


class TokenStoreError(ExactError):
    """The token store cannot be read, locked or written; ``str()`` names the place and what to do."""


def crash_point(name: str) -> None:
    """Test-only fault injection: die here (SIGKILL, no cleanup) when EXACT_TEST_CRASH_AT=name.

    Points: ``after_refresh_mark``, ``after_token_response``, ``during_store_write``,
    ``before_store_rename`` (file store: the new pair is in the pending file, not yet renamed).
    """
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def process_label() -> str:
    """Who holds a lock or started a refresh, for messages: host and pid, never anything secret."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def _client_prefix(client_id: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9]", "", client_id)[:8]
    return cleaned.lower() or "default"


def default_store_path(client_id: str) -> Path:
    return Path(DEFAULT_STORE_DIR) / f"exactonline-{_client_prefix(client_id)}.token.json"


@dataclass
class TokenSet:
    """One access/refresh token pair. Times are epoch seconds measured on this machine."""

    access_token: str = field(repr=False)
    access_expires_at: float
    refresh_token: str = field(repr=False)
    issued_at: float
    # The refresh mark as stored alongside these tokens (None when there is none).
    refresh_started_at: float | None = field(default=None, compare=False)
    refresh_started_by: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        register_secret(self.access_token)
        register_secret(self.refresh_token)

    @property
    def lifetime(self) -> float:
        return max(0.0, self.access_expires_at - self.issued_at)

    @property
    def interrupted_refresh(self) -> bool:
        """True if a refresh was started after these tokens were issued and never saved its result."""
        return self.refresh_started_at is not None and self.refresh_started_at >= self.issued_at

    def without_mark(self) -> TokenSet:
        return dataclasses.replace(self, refresh_started_at=None, refresh_started_by=None)


@runtime_checkable
class TokenStore(Protocol):
    """What every backend provides. ``write``, the mark and reserve methods only inside ``locked()``."""

    def describe(self) -> str:
        """Where the tokens are, for messages (no password)."""

    def read(self) -> TokenSet | None:
        """The stored tokens without taking the lock (a consistent snapshot), or None if empty."""

    def locked(self, *, replacing: bool = False) -> contextlib.AbstractContextManager[TokenSet | None]:
        """Hold the exclusive cross-process lock; yields the tokens read under it (a recovery copy
        newer than the store is taken over first, see :func:`newest`). ``replacing``: a login that
        overwrites the store; nothing is read (a damaged file is no obstacle) and None is yielded."""

    def write(self, tokens: TokenSet) -> None:
        """Replace the stored tokens atomically and durably (clears the refresh mark)."""

    def reserve_write(self, current: TokenSet | None) -> None:
        """Prove, before a refresh is sent, that its answer can be stored; raise TokenStoreError if not."""

    def rescue(self, tokens: TokenSet) -> str | None:
        """After ``write`` failed: save ``tokens`` in the documented recovery place (0600).

        Returns what to tell the user (where they are, that the next run takes them over, how to
        restore them by hand), or None when they could not be saved anywhere.
        """

    def mark_refresh_started(self, by: str) -> None:
        """Durably record, before a refresh request is sent, that ``by`` is refreshing."""

    def clear_refresh_mark(self) -> None:
        """Undo this lock holder's ``mark_refresh_started``: the store is again exactly as it was.

        For refreshes that certainly changed nothing at Exact (refused, or never sent).
        """


def check_client(found: object, client_id: str, where: str) -> None:
    if found and found != client_id:
        raise ConfigError(
            f"token store {where} holds tokens of client id {str(found)[:8]}..., not {client_id[:8]}... from the "
            "config: give each Exact app its own token_store"
        )


def tokens_from_row(row: dict) -> TokenSet | None:
    if not row or not row.get("refresh_token"):
        return None
    return TokenSet(
        access_token=row.get("access_token") or "",
        access_expires_at=float(row.get("access_expires_at") or 0.0),
        refresh_token=row["refresh_token"],
        issued_at=float(row.get("issued_at") or 0.0),
        refresh_started_at=(float(row["refresh_started_at"]) if row.get("refresh_started_at") is not None else None),
        refresh_started_by=row.get("refresh_started_by"),
    )


def document(tokens: TokenSet, client_id: str) -> dict:
    return {
        "format": FORMAT,
        "version": 1,
        "client_id": client_id,
        "access_token": tokens.access_token,
        "access_expires_at": tokens.access_expires_at,
        "refresh_token": tokens.refresh_token,
        "issued_at": tokens.issued_at,
        "refresh_started_at": tokens.refresh_started_at,
        "refresh_started_by": tokens.refresh_started_by,
    }


def encode(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


def saved_form(tokens: TokenSet, client_id: str) -> bytes:
    """The bytes of a freshly saved pair (no refresh mark), as the file store and recovery files hold it."""
    return encode(dict(document(tokens.without_mark(), client_id), written_at=time.time()))


_NUMBERS = ("access_expires_at", "issued_at", "refresh_started_at")
_TEXTS = ("access_token", "refresh_token", "refresh_started_by", "client_id")


def damage(data: bytes) -> tuple[dict | None, str]:
    """Parse a stored document: ``(doc, "")``, or ``(None, what is wrong)`` in words for a person.

    NUL bytes at the end are padding of a reserved file (:class:`exactonline_api.safefile.Reservation`).
    """
    data = data.rstrip(b"\0")
    if not data.strip():
        return None, "it is empty"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "it holds binary data, not text"
    try:
        doc = json.loads(text)
    except ValueError:
        # Every save writes a whole object; one that starts but never closes was cut off.
        cut = text.lstrip().startswith("{") and not text.rstrip().endswith("}")
        return None, "it ends in the middle of the document (truncated)" if cut else "it is not valid JSON"
    if not isinstance(doc, dict):
        return None, f"it holds a JSON {type(doc).__name__} instead of the token document"
    if doc.get("format", FORMAT) != FORMAT:
        return None, "it is not a tap-exactonline token store"
    for name in _NUMBERS:
        if doc.get(name) is not None and (isinstance(doc[name], bool) or not isinstance(doc[name], int | float)):
            return None, f"its {name} is not a number"
    for name in _TEXTS:
        if doc.get(name) is not None and not isinstance(doc[name], str):
            return None, f"its {name} is not text"
    if "refresh_token" in doc and not doc["refresh_token"]:
        return None, "its refresh_token is empty"
    return doc, ""


def damaged_store(where: str, reason: str, recovery: Path | None = None) -> TokenStoreError:
    if recovery is not None:
        todo = (f"{recovery} holds tokens an earlier run set aside: if they are the newest, move it over the store "
                f"(`mv {recovery} {where}`) and run again")
    else:
        todo = f"restore it from a backup, or delete it and run `{auth_command()}`"
    return TokenStoreError(f"token store {where} is damaged ({reason}); it was left as it is: {todo}")


def newest(stored: TokenSet | None, *copies: TokenSet | None) -> TokenSet | None:
    """The live token pair among the store and saved copies: the one Exact issued last.

    Safe because Exact kills a refresh token when it issues the next pair: a copy issued later than
    the stored pair was refreshed *from* it (or from a later login), so the stored one is dead.
    """
    best = stored
    for copy in copies:
        if copy is not None and (best is None or copy.issued_at > best.issued_at):
            best = copy
    return best


class LockDepth(threading.local):
    depth = 0
    # The store as it was before this lock holder's refresh mark, so that clearing the mark
    # restores it exactly (file: its bytes, or None when there was no file; PostgreSQL: the row).
    before_mark: object = None
    has_before = False
    # PostgreSQL: the connection whose transaction holds the lock.
    conn: Any = None

    def enter(self) -> None:
        self.depth += 1
        self.has_before, self.before_mark = False, None

    def leave(self) -> None:
        self.depth -= 1
        self.has_before, self.before_mark = False, None
