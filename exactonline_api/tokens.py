"""Where the OAuth tokens live between runs, shared by every process that uses one Exact app.

Exact rotates the refresh token on every refresh and kills the old one, so the store is the single
source of truth: whoever refreshes writes the new pair here before using it, under a cross-process
lock (see :class:`exactonline_api.oauth.TokenManager` for the protocol).

Backends, chosen by ``token_store`` in the config (:func:`open_token_store`):

* a file (default ``.tokens/exactonline-<client id prefix>.token.json`` under the working
  directory): JSON, mode 0600, replaced atomically (temp file + fsync + rename), locked with
  ``fcntl.flock`` on a sibling ``.lock`` file;
* PostgreSQL (``postgresql://...``): table ``exactonline_tokens`` keyed by client id, locked with
  ``SELECT ... FOR UPDATE``; for several machines or containers sharing one app.

Besides the tokens, a store keeps a *refresh mark*: "process X started a refresh at T". It is made
durable before the refresh request goes out, so if X dies after Exact answered but before the new
pair was saved, the next process can say exactly what happened instead of a vague auth failure.
A mark is stale (ignored) once the stored tokens were issued after it.
"""

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from exactonline_api.errors import ConfigError, ExactError
from exactonline_api.filelock import wait_for_flock
from exactonline_api.redact import register_secret

DEFAULT_STORE_DIR = ".tokens"
CRASH_ENV = "EXACT_TEST_CRASH_AT"
_FORMAT = "tap-exactonline token store"


def crash_point(name: str) -> None:
    """Test-only fault injection: die here (SIGKILL, no cleanup) when EXACT_TEST_CRASH_AT=name.

    Points: ``after_refresh_mark``, ``after_token_response``, ``during_store_write``.
    """
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def process_label() -> str:
    """Who holds a lock or started a refresh, for messages: host and pid, never anything secret."""
    return f"{socket.gethostname()} pid {os.getpid()}"


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
    """What every backend provides. ``write`` and the mark methods only inside ``locked()``."""

    def describe(self) -> str:
        """Where the tokens are, for messages (no password)."""

    def read(self) -> TokenSet | None:
        """The stored tokens without taking the lock (a consistent snapshot), or None if empty."""

    def locked(self) -> contextlib.AbstractContextManager[TokenSet | None]:
        """Hold the exclusive cross-process lock; yields the tokens read under it."""

    def write(self, tokens: TokenSet) -> None:
        """Replace the stored tokens atomically and durably (clears the refresh mark)."""

    def mark_refresh_started(self, by: str) -> None:
        """Durably record, before a refresh request is sent, that ``by`` is refreshing."""

    def clear_refresh_mark(self) -> None:
        """Undo this lock holder's ``mark_refresh_started``: the store is again exactly as it was.

        For refreshes that certainly changed nothing at Exact (refused, or never sent).
        """


def _client_prefix(client_id: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9]", "", client_id)[:8]
    return cleaned.lower() or "default"


def default_store_path(client_id: str) -> Path:
    return Path(DEFAULT_STORE_DIR) / f"exactonline-{_client_prefix(client_id)}.token.json"


def open_token_store(spec: str | None, *, client_id: str) -> TokenStore:
    """Open the store named by the ``token_store`` config value.

    None or "": the default file under the working directory (see module doc). A ``postgresql://``
    or ``postgres://`` URL: the PostgreSQL backend. Anything else: a file path (``~`` and ``$VARS``
    expanded); an existing directory gets the default file name inside it.
    """
    if not client_id:
        raise ConfigError("client_id is missing from the config: copy it from your app at apps.exactonline.com")
    if not spec:
        return FileTokenStore(default_store_path(client_id), client_id=client_id)
    spec = spec.strip()
    if spec.startswith(("postgresql://", "postgres://")):
        return PostgresTokenStore(spec, client_id=client_id)
    if "://" in spec:
        raise ConfigError(
            f"token_store '{spec.split('://')[0]}://...' is not supported: use a file path or a postgresql:// URL"
        )
    path = Path(os.path.expandvars(os.path.expanduser(spec)))
    if path.is_dir():
        path = path / default_store_path(client_id).name
    return FileTokenStore(path, client_id=client_id)


def _check_client(found: str | None, client_id: str, where: str) -> None:
    if found and found != client_id:
        raise ConfigError(
            f"token store {where} holds tokens of client id {found[:8]}..., not {client_id[:8]}... from the config: "
            "give each Exact app its own token_store"
        )


def _tokens_from_row(row: dict) -> TokenSet | None:
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


_UNSET = object()


class _LockDepth(threading.local):
    depth = 0
    # File backend: the store's bytes before this lock holder's refresh mark, so that clearing the
    # mark restores the file exactly (or removes it again when the store was empty).
    before_mark: object = _UNSET


# --------------------------------------------------------------------------------------------------
# File backend
# --------------------------------------------------------------------------------------------------


class FileTokenStore:
    """JSON file, replaced atomically; ``flock`` on ``<file>.lock`` serialises writers.

    The lock lives in a separate file because the data file is replaced by rename: a lock on the
    data file's inode would vanish with the old inode. flock locks belong to the open file
    description, so two threads of one process exclude each other as well as two processes do;
    the kernel drops the lock when a holder dies, even by SIGKILL.
    """

    def __init__(self, path: str | os.PathLike, *, client_id: str, lock_timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.client_id = client_id
        self.lock_timeout = lock_timeout
        self._held = _LockDepth()

    def describe(self) -> str:
        return f"file {self.path}"

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------------
    def _read_doc(self) -> dict | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ExactError(f"cannot read token store {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            # Only a hand edit can do this: every write is atomic.
            raise ExactError(
                f"token store {self.path} is not valid JSON: fix or delete it, then run `tap-exactonline auth`"
            ) from None
        _check_client(doc.get("client_id"), self.client_id, str(self.path))
        return doc

    def read(self) -> TokenSet | None:
        return _tokens_from_row(self._read_doc() or {})

    # -- locking ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[TokenSet | None]:
        import fcntl

        if self._held.depth:
            raise RuntimeError("FileTokenStore.locked() is not re-entrant")
        self._ensure_dir()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not wait_for_flock(fd, self.lock_timeout):
                raise ExactError(
                    f"waited {self.lock_timeout:.0f} s for the token store lock {self.lock_path}; "
                    "another process holds it (a hung run?): stop it and try again")
            self._held.depth += 1
            self._held.before_mark = _UNSET
            try:
                self._remove_stale_temp_files()
                yield self.read()
            finally:
                self._held.depth -= 1
                self._held.before_mark = _UNSET
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _require_lock(self, what: str) -> None:
        if not self._held.depth:
            raise RuntimeError(f"FileTokenStore.{what}() must be called inside locked()")

    # -- writing ------------------------------------------------------------------------------------
    def write(self, tokens: TokenSet) -> None:
        self._require_lock("write")
        self._write_doc(self._doc(tokens.without_mark()), saving_tokens=True)

    def mark_refresh_started(self, by: str) -> None:
        self._require_lock("mark_refresh_started")
        try:
            self._held.before_mark = self.path.read_bytes()
        except FileNotFoundError:
            self._held.before_mark = None
        doc = self._read_doc() or {"client_id": self.client_id}
        doc["refresh_started_at"] = time.time()
        doc["refresh_started_by"] = by
        self._write_doc(doc)

    def clear_refresh_mark(self) -> None:
        self._require_lock("clear_refresh_mark")
        before = self._held.before_mark
        if before is None:  # the store was empty before the mark
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        elif isinstance(before, bytes):
            self._write_bytes(before)

    def _doc(self, tokens: TokenSet) -> dict:
        return {
            "format": _FORMAT,
            "version": 1,
            "client_id": self.client_id,
            "access_token": tokens.access_token,
            "access_expires_at": tokens.access_expires_at,
            "refresh_token": tokens.refresh_token,
            "issued_at": tokens.issued_at,
            "refresh_started_at": tokens.refresh_started_at,
            "refresh_started_by": tokens.refresh_started_by,
        }

    def _ensure_dir(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            # Owner-only: the directory lists which apps have tokens here.
            parent.mkdir(parents=True, mode=0o700, exist_ok=True)

    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def _remove_stale_temp_files(self) -> None:
        # Under the lock nobody else is writing, so any temp file is left over from a killed writer.
        for stale in self.path.parent.glob(self._temp_prefix() + "*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _write_doc(self, doc: dict, *, saving_tokens: bool = False) -> None:
        doc["written_at"] = time.time()
        self._write_bytes((json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"), saving_tokens)

    def _write_bytes(self, data: bytes, saving_tokens: bool = False) -> None:
        self._ensure_dir()
        tmp = self.path.parent / f"{self._temp_prefix()}{os.getpid()}.{threading.get_ident()}.tmp"
        # O_EXCL + 0600: the file is never readable by others, not even for a moment.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                if saving_tokens and os.environ.get(CRASH_ENV) == "during_store_write":
                    os.write(fd, data[: len(data) // 2])
                    os.fsync(fd)
                    crash_point("during_store_write")
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # The rename is only durable once the directory entry is on disk.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --------------------------------------------------------------------------------------------------
# PostgreSQL backend
# --------------------------------------------------------------------------------------------------

TOKENS_TABLE = "exactonline_tokens"
# The refresh mark has its own table: it must be committed while the token row is still locked by
# the open transaction, which a second connection can only do on a row that transaction does not hold.
MARKS_TABLE = "exactonline_token_refreshes"


class PostgresTokenStore:
    """Table ``exactonline_tokens`` (one row per client id); the lock is that row, ``FOR UPDATE``.

    The row lock lasts as long as the transaction of ``locked()``; PostgreSQL drops it when the
    holder's connection dies, so a killed process never leaves the store locked. Token writes are
    part of that transaction: a process killed mid-write leaves the previous row intact.
    """

    def __init__(self, url: str, *, client_id: str, lock_timeout: float = 120.0) -> None:
        try:
            import psycopg  # noqa: F401  (optional dependency, only for this backend)
        except ImportError:
            raise ConfigError(
                "token_store is a PostgreSQL URL but psycopg is not installed: "
                "pip install 'tap-exactonline[postgres]'"
            ) from None
        parts = urlsplit(url)
        if parts.password:
            register_secret(parts.password, pin=True)
        self.url = url
        self.client_id = client_id
        self.lock_timeout = lock_timeout
        self._conn = None
        self._conn_pid: int | None = None
        self._conn_lock = threading.RLock()
        self._held = _LockDepth()
        self._schema_ready = False

    def describe(self) -> str:
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if parts.password:
            netloc = netloc.replace(f":{parts.password}@", ":***@")
        return "PostgreSQL " + urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def __repr__(self) -> str:
        return f"PostgresTokenStore({self.describe()!r})"

    # -- connections --------------------------------------------------------------------------------
    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ExactError(f"cannot connect to token store {self.describe()}: {_pg_reason(exc)}") from None

    def _connection(self):
        # A connection must not cross a fork: both processes would talk on one socket.
        if self._conn is None or self._conn_pid != os.getpid() or self._conn.closed:
            self._conn = self._connect()
            self._conn_pid = os.getpid()
            if not self._schema_ready:
                self._ensure_schema(self._conn)
                self._schema_ready = True
        return self._conn

    def _ensure_schema(self, conn) -> None:
        import psycopg

        try:
            with conn.transaction():
                # Several processes may start at once; the advisory lock serialises the DDL.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TOKENS_TABLE,))
                if conn.execute("SELECT to_regclass(%s)", (TOKENS_TABLE,)).fetchone()[0] is None:
                    conn.execute(
                        f"""CREATE TABLE {TOKENS_TABLE} (
                            client_id text PRIMARY KEY,
                            access_token text,
                            access_expires_at double precision,
                            refresh_token text,
                            issued_at double precision,
                            updated_at timestamptz NOT NULL DEFAULT now()
                        )"""
                    )
                if conn.execute("SELECT to_regclass(%s)", (MARKS_TABLE,)).fetchone()[0] is None:
                    conn.execute(
                        f"""CREATE TABLE {MARKS_TABLE} (
                            client_id text PRIMARY KEY,
                            refresh_started_at double precision NOT NULL,
                            refresh_started_by text NOT NULL
                        )"""
                    )
        except psycopg.Error as exc:
            raise ExactError(
                f"cannot create the token tables in {self.describe()}: {_pg_reason(exc)} "
                f"(create {TOKENS_TABLE} and {MARKS_TABLE} as an admin, or grant CREATE)"
            ) from None

    _SELECT = (
        f"SELECT t.access_token, t.access_expires_at, t.refresh_token, t.issued_at, "
        f"m.refresh_started_at, m.refresh_started_by "
        f"FROM {TOKENS_TABLE} t LEFT JOIN {MARKS_TABLE} m USING (client_id) WHERE t.client_id = %s"
    )
    _COLUMNS = (
        "access_token",
        "access_expires_at",
        "refresh_token",
        "issued_at",
        "refresh_started_at",
        "refresh_started_by",
    )

    def _row(self, cur_row) -> TokenSet | None:
        if cur_row is None:
            return None
        return _tokens_from_row(dict(zip(self._COLUMNS, cur_row)))

    def read(self) -> TokenSet | None:
        import psycopg

        with self._conn_lock:
            try:
                row = self._connection().execute(self._SELECT, (self.client_id,)).fetchone()
            except psycopg.Error as exc:
                self._drop_connection()
                raise ExactError(f"cannot read token store {self.describe()}: {_pg_reason(exc)}") from None
        return self._row(row)

    def _drop_connection(self) -> None:
        with contextlib.suppress(Exception):
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
        self._conn = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[TokenSet | None]:
        import psycopg

        if self._held.depth:
            raise RuntimeError("PostgresTokenStore.locked() is not re-entrant")
        with self._conn_lock:
            conn = self._connection()
            try:
                # Leaving this block commits (the write becomes visible and the lock goes) or, on
                # any exception, rolls back so the row stays exactly as it was.
                with conn.transaction():
                    conn.execute(
                        "SELECT set_config('lock_timeout', %s, true)", (f"{int(self.lock_timeout * 1000)}ms",)
                    )
                    # FOR UPDATE needs a row to lock, also while the store is still empty.
                    conn.execute(
                        f"INSERT INTO {TOKENS_TABLE} (client_id) VALUES (%s) ON CONFLICT DO NOTHING",
                        (self.client_id,),
                    )
                    row = conn.execute(self._SELECT + " FOR UPDATE OF t", (self.client_id,)).fetchone()
                    self._held.depth += 1
                    self._held.before_mark = _UNSET
                    try:
                        yield self._row(row)
                    finally:
                        self._held.depth -= 1
                        self._held.before_mark = _UNSET
            except psycopg.errors.LockNotAvailable:
                raise ExactError(
                    f"waited {self.lock_timeout:.0f} s for the token lock in {self.describe()}; "
                    "another process holds it (a hung run?): stop it and try again"
                ) from None
            except psycopg.Error as exc:
                self._drop_connection()
                raise ExactError(f"token store {self.describe()} failed: {_pg_reason(exc)}") from None

    def _require_lock(self, what: str) -> None:
        if not self._held.depth:
            raise RuntimeError(f"PostgresTokenStore.{what}() must be called inside locked()")

    def write(self, tokens: TokenSet) -> None:
        self._require_lock("write")
        conn = self._connection()
        conn.execute(
            f"UPDATE {TOKENS_TABLE} SET access_token = %s, access_expires_at = %s, refresh_token = %s, "
            f"issued_at = %s, updated_at = now() WHERE client_id = %s",
            (tokens.access_token, tokens.access_expires_at, tokens.refresh_token, tokens.issued_at, self.client_id),
        )
        # Same transaction: the new tokens and the end of the refresh mark commit together.
        conn.execute(f"DELETE FROM {MARKS_TABLE} WHERE client_id = %s", (self.client_id,))
        # Killed here, the transaction never commits and PostgreSQL keeps the previous row.
        crash_point("during_store_write")

    def _autocommit(self, sql: str, params: tuple) -> None:
        import psycopg

        # A separate connection: the locking transaction must stay open, yet the mark must be
        # committed now, before the refresh request leaves.
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as side:
                side.execute(sql, params)
        except psycopg.Error as exc:
            raise ExactError(f"cannot write the refresh mark to {self.describe()}: {_pg_reason(exc)}") from None

    _UPSERT_MARK = (
        f"INSERT INTO {MARKS_TABLE} (client_id, refresh_started_at, refresh_started_by) VALUES (%s, %s, %s) "
        "ON CONFLICT (client_id) DO UPDATE SET refresh_started_at = EXCLUDED.refresh_started_at, "
        "refresh_started_by = EXCLUDED.refresh_started_by"
    )

    def mark_refresh_started(self, by: str) -> None:
        self._require_lock("mark_refresh_started")
        # Remember the mark it replaces (one left by a dead process), so clearing restores it.
        row = self._connection().execute(
            f"SELECT refresh_started_at, refresh_started_by FROM {MARKS_TABLE} WHERE client_id = %s",
            (self.client_id,),
        ).fetchone()
        self._held.before_mark = tuple(row) if row else None
        self._autocommit(self._UPSERT_MARK, (self.client_id, time.time(), by))

    def clear_refresh_mark(self) -> None:
        self._require_lock("clear_refresh_mark")
        before = self._held.before_mark
        if isinstance(before, tuple):
            self._autocommit(self._UPSERT_MARK, (self.client_id, *before))
        elif before is None:
            self._autocommit(f"DELETE FROM {MARKS_TABLE} WHERE client_id = %s", (self.client_id,))

    def close(self) -> None:
        with self._conn_lock:
            self._drop_connection()


def _pg_reason(exc: Exception) -> str:
    # psycopg messages can span lines (DETAIL, HINT); the first line says what failed.
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
