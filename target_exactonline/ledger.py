"""The write ledger: what the target last wrote to Exact (or found equal there), so that a record
whose source did not change costs no API call at all.

One row per (Exact site, stream, division, natural key): a SHA-256 *fingerprint* of the record as
the target shaped it (Exact field values after conversion, ``AccountCode``, and for attachments the
file name, size and a SHA-256 of the bytes), Exact's ID for it, and a little JSON (the account an
``AccountCode`` resolved to; per attachment file name the contents the target uploaded or found).
No field values, no file contents, no tokens or secrets: hashes, keys and IDs only.

How the upserters use it (writer.py):

* a record whose fingerprint equals its row is *unchanged*: no lookup, no division check, no call;
* any other record takes the usual path (lookup by natural key, field-wise diff, safe create) and
  its row is written only after Exact confirmed the write, or the lookup showed Exact already
  holds it; the rows of a batch are committed together when the batch is done. A crash before the
  commit loses rows, never adds one for an unwritten record: the rerun looks those records up and
  finds what was written (no duplicate);
* a record Exact refused (its own fault: a 400, or a 500 with Exact's message) is remembered in
  ``refusals`` with its fingerprint and Exact's message; while its fingerprint stays the same a
  later run rejects it again with that message and makes no call (Exact would answer the same, and
  each 400 counts toward Exact's hourly error limit). A changed record, or ``resend_refused``, sends
  it again; a record Exact then confirms loses its refusal row;
* ``verify_unchanged: true`` looks every record up in Exact anyway (and keeps the ledger current);
* a dry run reads the ledger but never creates or changes it.

The trade-off: with the ledger, a change made in Exact itself (by hand, by another app) to a record
whose source did not change is not seen, so not overwritten; nor is a record deleted in Exact
created again. ``verify_unchanged: true`` (or deleting the ledger file, which is always safe: the
next run looks everything up again) restores the "Exact is compared every run" behaviour.

Storage: an SQLite file (standard library), mode 0600. Each batch's rows are one transaction with
``synchronous=FULL`` (SQLite's rollback journal makes a commit atomic: after a crash the file holds
the old rows or the new ones, never half). One run at a time: the run holds ``fcntl.flock`` on a
sibling ``.lock`` file from its first ledger access to its end, like the token store's lock; a
second run waits for it, then stops with a clear message.

Default location: next to the token store file, ``<token store file name>.target-ledger.sqlite``
(a new token store means a new Exact connection, so a new ledger); with a PostgreSQL token store,
next to where the default token file would be (``.tokens/`` under the working directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exactonline_api.budget import beside_token_store
from exactonline_api.errors import ConfigError, ExactError
from exactonline_api.filelock import wait_for_flock
from exactonline_api.safefile import problem
from exactonline_api.tokens import crash_point, process_label

LOG = logging.getLogger("target_exactonline.ledger")

FORMAT = "target-exactonline ledger"
VERSION = 1
SUFFIX = ".target-ledger.sqlite"
LOCK_TIMEOUT = 60.0
# Keys per SELECT (SQLite allows 999 variables on old builds).
_CHUNK = 400
# Contents remembered per attachment file name of one record (older ones are forgotten).
MAX_FILE_VERSIONS = 20
# Test-only: EXACT_TEST_CRASH_AT=before_ledger_save kills the process after the writes of a batch,
# before their rows are committed.
CRASH_BEFORE_SAVE = "before_ledger_save"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    site TEXT NOT NULL,
    stream TEXT NOT NULL,
    division INTEGER NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    exact_id TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL,
    PRIMARY KEY (site, stream, division, key)
);
CREATE TABLE IF NOT EXISTS refusals (
    site TEXT NOT NULL,
    stream TEXT NOT NULL,
    division INTEGER NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reason TEXT NOT NULL,
    refused_at REAL NOT NULL,
    PRIMARY KEY (site, stream, division, key)
);
"""


def fingerprint(content: Any) -> str:
    """SHA-256 of ``content`` as canonical JSON (sorted keys; dates and the like as text)."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_key(pairs: Iterable[tuple[str, Any]]) -> str:
    """The ledger key of a record: its natural-key field names and normalised values, as JSON."""
    return json.dumps([[name, value] for name, value in pairs], ensure_ascii=False, default=str)


def default_ledger_path(config: Mapping[str, Any]) -> Path:
    """Next to the token store file; for a PostgreSQL store, next to the default token file."""
    return beside_token_store(config, SUFFIX)


def ledger_path(config: Mapping[str, Any]) -> Path:
    """``ledger_path`` (a folder gets the default file name inside it), else the default."""
    spec = str(config.get("ledger_path") or "").strip()
    if not spec:
        return default_ledger_path(config)
    path = Path(os.path.expandvars(os.path.expanduser(spec)))
    return path / default_ledger_path({**config, "ledger_path": None}).name if path.is_dir() else path


@dataclass(frozen=True)
class Entry:
    fingerprint: str
    exact_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """Exact refused a record with this fingerprint, at ``refused_at`` (epoch seconds), for ``reason``."""

    fingerprint: str
    reason: str
    refused_at: float


class Ledger:
    """The ledger file of one run. ``writable=False`` (dry run): read if it exists, never touched."""

    def __init__(self, path: str | os.PathLike, *, site: str, writable: bool = True,
                 lock_timeout: float | None = None) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.site = site.rstrip("/")
        self.writable = writable
        self.lock_timeout = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._opened = False
        self._pending: dict[tuple[str, int, str], Entry] = {}
        # A refusal to keep (Refusal) or to forget (None) at the next flush.
        self._pending_refusals: dict[tuple[str, int, str], Refusal | None] = {}
        self.saved = 0

    def describe(self) -> str:
        return str(self.path)

    # -- opening --------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection | None:
        if self._opened:
            return self._conn
        self._opened = True
        if self.writable:
            self._conn = self._open_for_writing()
        else:
            self._conn = self._open_read_only()
        return self._conn

    def _open_read_only(self) -> sqlite3.Connection | None:
        if not self.path.is_file():
            return None
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("SELECT count(*) FROM entries").fetchone()
            return conn
        except sqlite3.Error as exc:
            LOG.warning("ledger %s could not be read (%s); every record is looked up in Exact", self.path, exc)
            return None

    def _open_for_writing(self) -> sqlite3.Connection:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        self._lock()
        try:
            # Created 0600 before SQLite opens it (SQLite gives its journal the same mode).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            # One run, one sink at a time; the SDK may drain from another thread than it opened on.
            conn = sqlite3.connect(self.path, timeout=self.lock_timeout, check_same_thread=False)
            try:
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
                meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
                if not meta:
                    with conn:
                        conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)",
                                         [("format", FORMAT), ("version", str(VERSION))])
                elif meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
                    raise ConfigError(f"{self.path} is not a version {VERSION} target-exactonline ledger; "
                                      "set ledger_path to another file, or delete it (the next run looks every "
                                      "record up in Exact again)")
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            self._unlock()
            raise ConfigError(f"ledger {self.path} cannot be used ({exc}); delete it (the next run looks every "
                              "record up in Exact again) or set ledger_path to another file") from None
        except BaseException:
            self._unlock()
            raise
        return conn

    def _lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # a read-only or full disk, no permission: one line, not a traceback
            raise problem(exc, "create the ledger lock", self.lock_path, setting="ledger_path",
                          error=ExactError) from None
        if not wait_for_flock(fd, self.lock_timeout, max_delay=0.25):
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise ExactError(
                f"waited {self.lock_timeout:.0f} s for the ledger {self.path}: another target-exactonline "
                f"run uses it{f' ({holder})' if holder else ''}; run one at a time, or give each its own "
                "ledger_path")
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, process_label().encode("utf-8"), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        import fcntl

        fd, self._lock_fd = self._lock_fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- reading and writing ----------------------------------------------------------------------------

    def _select(self, table: str, columns: str, stream: str, division: int, keys: list[str]) -> Iterable[tuple]:
        conn = self._open() if keys else None
        if conn is None:
            return
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            try:
                rows = conn.execute(
                    f"SELECT key, {columns} FROM {table} WHERE site = ? AND stream = ? AND division = ? "
                    f"AND key IN ({marks})", (self.site, stream, int(division), *chunk)).fetchall()
            except sqlite3.OperationalError:  # a dry run on a ledger written before that table existed
                return
            yield from rows

    def lookup(self, stream: str, division: int, keys: Iterable[str]) -> dict[str, Entry]:
        """The rows of these keys (not yet committed ones included)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        for key, print_, exact_id, extra in self._select("entries", "fingerprint, exact_id, extra", stream,
                                                         division, wanted):
            try:
                loaded = json.loads(extra or "{}")
            except ValueError:
                loaded = {}
            found[key] = Entry(print_, exact_id, loaded if isinstance(loaded, dict) else {})
        for key in wanted:
            pending = self._pending.get((stream, int(division), key))
            if pending is not None:
                found[key] = pending
        return found

    def refusals(self, stream: str, division: int, keys: Iterable[str]) -> dict[str, Refusal]:
        """Exact's remembered refusals of these keys (this run's included)."""
        wanted = list(dict.fromkeys(keys))
        found = {key: Refusal(print_, reason, float(at)) for key, print_, reason, at
                 in self._select("refusals", "fingerprint, reason, refused_at", stream, division, wanted)}
        for key in wanted:
            slot = (stream, int(division), key)
            if slot in self._pending_refusals:
                pending = self._pending_refusals[slot]
                if pending is None:
                    found.pop(key, None)
                else:
                    found[key] = pending
        return found

    def refuse(self, stream: str, division: int, key: str, print_: str, reason: str) -> None:
        """Remember that Exact refused this record as it is now (nothing in a dry run)."""
        if self.writable:
            self._pending_refusals[(stream, int(division), key)] = Refusal(print_, reason, time.time())

    def record(self, stream: str, division: int, key: str, print_: str, exact_id: Any = None,
               extra: Mapping[str, Any] | None = None) -> None:
        """Remember a record Exact confirmed; committed by :meth:`flush` (nothing in a dry run)."""
        if not self.writable:
            return
        self._pending[(stream, int(division), key)] = Entry(
            print_, None if exact_id in (None, "") else str(exact_id), dict(extra or {}))
        self._pending_refusals[(stream, int(division), key)] = None  # confirmed now: no longer refused

    def flush(self) -> int:
        """Commit the remembered rows in one transaction; the number of confirmed records committed."""
        if not (self._pending or self._pending_refusals) or not self.writable:
            return 0
        crash_point(CRASH_BEFORE_SAVE)
        conn = self._open()
        assert conn is not None
        now = time.time()
        rows = [(self.site, stream, division, key, entry.fingerprint, entry.exact_id,
                 json.dumps(entry.extra, sort_keys=True, separators=(",", ":")), now)
                for (stream, division, key), entry in self._pending.items()]
        refused = [(self.site, s, d, k, r.fingerprint, r.reason, r.refused_at)
                   for (s, d, k), r in self._pending_refusals.items() if r is not None]
        forgotten = [(self.site, s, d, k) for (s, d, k), r in self._pending_refusals.items() if r is None]
        try:
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO entries (site, stream, division, key, fingerprint, exact_id, extra, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                conn.executemany("DELETE FROM refusals WHERE site = ? AND stream = ? AND division = ? AND key = ?",
                                 forgotten)
                conn.executemany(
                    "INSERT OR REPLACE INTO refusals (site, stream, division, key, fingerprint, reason, "
                    "refused_at) VALUES (?, ?, ?, ?, ?, ?, ?)", refused)
        except sqlite3.Error as exc:
            raise ExactError(f"could not save the ledger {self.path} ({exc}); what was written to Exact is "
                             "found by its natural key on the next run") from None
        self._pending.clear()
        self._pending_refusals.clear()
        self.saved += len(rows)
        return len(rows)

    def close(self) -> None:
        """Commit what is left and release the file (idempotent)."""
        try:
            self.flush()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._unlock()
            self._opened = False

    def entries(self) -> list[dict[str, Any]]:
        """Every committed row of this site (for tests and troubleshooting)."""
        conn = self._open()
        if conn is None:
            return []
        rows = conn.execute("SELECT stream, division, key, fingerprint, exact_id, extra FROM entries "
                            "WHERE site = ? ORDER BY stream, division, key", (self.site,)).fetchall()
        return [{"stream": s, "division": d, "key": json.loads(k), "fingerprint": f, "exact_id": i,
                 "extra": json.loads(e or "{}")} for s, d, k, f, i, e in rows]
