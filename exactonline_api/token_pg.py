"""The PostgreSQL token store: one row per client id, locked with ``SELECT ... FOR UPDATE``.

For several machines or containers sharing one app. The refresh rules are those of the file store
(see :mod:`exactonline_api.token_file`): before a refresh the row is test-written (a savepoint that
is rolled back), and when the new tokens cannot be written after Exact answered, they go to the
recovery file beside the default token file (``.tokens/exactonline-<client>.token.json.recovery``
in the working directory), which the next run takes over under the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from exactonline_api import safefile
from exactonline_api.errors import ConfigError
from exactonline_api.redact import register_secret
from exactonline_api.tokenset import (
    RECOVERY_SUFFIX,
    LockDepth,
    TokenSet,
    TokenStoreError,
    crash_point,
    damage,
    default_store_path,
    newest,
    saved_form,
    set_aside_note,
    tokens_from_row,
)

log = logging.getLogger("exactonline_api.tokens")

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
        self._held = LockDepth()
        self.recovery_path = Path(str(default_store_path(client_id)) + RECOVERY_SUFFIX)
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
            raise TokenStoreError(f"cannot connect to token store {self.describe()}: {_pg_problem(exc)}") from None

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
            raise TokenStoreError(
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
        return tokens_from_row(dict(zip(self._COLUMNS, cur_row)))

    def read(self) -> TokenSet | None:
        import psycopg

        with self._conn_lock:
            try:
                row = self._connection().execute(self._SELECT, (self.client_id,)).fetchone()
            except psycopg.Error as exc:
                self._drop_connection()
                raise TokenStoreError(f"cannot read token store {self.describe()}: {_pg_problem(exc)}") from None
        return self._row(row)

    def _drop_connection(self) -> None:
        with contextlib.suppress(Exception):
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
        self._conn = None

    @contextlib.contextmanager
    def locked(self, *, replacing: bool = False) -> Iterator[TokenSet | None]:
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
                    self._held.enter()
                    self._held.conn = conn
                    try:
                        if replacing:
                            took_over = False
                            yield None
                        else:
                            current, took_over = self._take_over_copy(self._row(row))
                            yield current
                    finally:
                        self._held.leave()
                        self._held.conn = None
            except psycopg.errors.LockNotAvailable:
                raise TokenStoreError(
                    f"waited {self.lock_timeout:.0f} s for the token lock in {self.describe()}; "
                    "another process holds it (a hung run?): stop it and try again"
                ) from None
            except psycopg.Error as exc:
                self._drop_connection()
                raise TokenStoreError(f"token store {self.describe()} failed: {_pg_problem(exc)}") from None
        if took_over:  # only once the row holding them is committed
            with contextlib.suppress(OSError):
                self.recovery_path.unlink()

    def _recovered(self) -> TokenSet | None:
        with contextlib.suppress(OSError, TokenStoreError):
            doc, _ = damage(safefile.read_private(self.recovery_path, lambda mode: None) or b"")
            if doc is not None and doc.get("client_id") == self.client_id:
                return tokens_from_row(doc)
        return None

    def _take_over_copy(self, stored: TokenSet | None) -> tuple[TokenSet | None, bool]:
        copy = self._recovered()
        if copy is None or newest(stored, copy) is stored:
            return stored, copy is not None
        try:
            self.write(copy)
        except TokenStoreError as exc:
            log.warning("using the newer tokens saved in %s; %s still cannot take them (%s)",
                        self.recovery_path, self.describe(), exc)
            return copy, False
        log.warning("took over the newer tokens saved in %s into %s", self.recovery_path, self.describe())
        return copy, True

    def _require_lock(self, what: str, *, connected: bool = True):
        """The connection holding the lock. Never a new one: a write there would not be under the lock."""
        if not self._held.depth:
            raise RuntimeError(f"PostgresTokenStore.{what}() must be called inside locked()")
        conn = self._held.conn
        if connected and conn.closed:
            raise TokenStoreError(f"lost the connection to token store {self.describe()} that held the token lock "
                                  "(database restarted or network cut?)")
        return conn

    _UPDATE = (
        f"UPDATE {TOKENS_TABLE} SET access_token = %s, access_expires_at = %s, refresh_token = %s, "
        f"issued_at = %s, updated_at = now() WHERE client_id = %s"
    )

    def write(self, tokens: TokenSet) -> None:
        import psycopg

        conn = self._require_lock("write")
        try:
            # A savepoint: a failed write leaves the locking transaction usable for a retry.
            with conn.transaction():
                conn.execute(self._UPDATE, (tokens.access_token, tokens.access_expires_at, tokens.refresh_token,
                                            tokens.issued_at, self.client_id))
                # Same transaction: the new tokens and the end of the refresh mark commit together.
                conn.execute(f"DELETE FROM {MARKS_TABLE} WHERE client_id = %s", (self.client_id,))
        except psycopg.Error as exc:
            raise TokenStoreError(f"cannot write token store {self.describe()}: {_pg_problem(exc)}") from None
        # Killed here, the transaction never commits and PostgreSQL keeps the previous row.
        crash_point("during_store_write")

    def reserve_write(self, current: TokenSet | None) -> None:
        import psycopg

        conn = self._require_lock("reserve_write")
        # The database keeps no space for us; what can be proved is that this user may write the row
        # and the marks (rights, a read-only standby, triggers): the same statements, rolled back.
        size = max(2048, 2 * len((current.access_token + current.refresh_token) if current else ""))
        try:
            with conn.transaction() as probe:
                conn.execute(self._UPDATE, ("x" * size, 0.0, "x" * size, 0.0, self.client_id))
                conn.execute(f"DELETE FROM {MARKS_TABLE} WHERE client_id = %s", (self.client_id,))
                raise psycopg.Rollback(probe)
        except psycopg.Error as exc:
            raise TokenStoreError(
                f"cannot write token store {self.describe()}: {_pg_problem(exc)}; nothing was sent to Exact, "
                "the stored tokens are unchanged") from None

    def rescue(self, tokens: TokenSet) -> str | None:
        self._require_lock("rescue", connected=False)
        data = saved_form(tokens, self.client_id)
        path = self.recovery_path
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            safefile.replace_atomically(path, data, path.with_name(f".{path.name}.{os.getpid()}.tmp"))
            return set_aside_note(path.resolve(), self.describe(),
                                  f"run again from {Path.cwd()}, where the next run looks for that file")
        return None

    def _autocommit(self, sql: str, params: tuple) -> None:
        import psycopg

        # A separate connection: the locking transaction must stay open, yet the mark must be
        # committed now, before the refresh request leaves.
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as side:
                side.execute(sql, params)
        except psycopg.Error as exc:
            raise TokenStoreError(f"cannot write the refresh mark to {self.describe()}: {_pg_problem(exc)}") from None

    _UPSERT_MARK = (
        f"INSERT INTO {MARKS_TABLE} (client_id, refresh_started_at, refresh_started_by) VALUES (%s, %s, %s) "
        "ON CONFLICT (client_id) DO UPDATE SET refresh_started_at = EXCLUDED.refresh_started_at, "
        "refresh_started_by = EXCLUDED.refresh_started_by"
    )

    def mark_refresh_started(self, by: str) -> None:
        conn = self._require_lock("mark_refresh_started")
        # Remember the mark it replaces (one left by a dead process), so clearing restores it.
        row = conn.execute(
            f"SELECT refresh_started_at, refresh_started_by FROM {MARKS_TABLE} WHERE client_id = %s",
            (self.client_id,),
        ).fetchone()
        self._held.has_before, self._held.before_mark = True, (tuple(row) if row else None)
        self._autocommit(self._UPSERT_MARK, (self.client_id, time.time(), by))

    def clear_refresh_mark(self) -> None:
        self._require_lock("clear_refresh_mark", connected=False)
        before = self._held.before_mark
        if not self._held.has_before:
            return
        if isinstance(before, tuple):
            self._autocommit(self._UPSERT_MARK, (self.client_id, *before))
        else:
            self._autocommit(f"DELETE FROM {MARKS_TABLE} WHERE client_id = %s", (self.client_id,))

    def close(self) -> None:
        with self._conn_lock:
            self._drop_connection()


def _pg_reason(exc: Exception) -> str:
    # psycopg messages can span lines (DETAIL, HINT); the first line says what failed.
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _pg_problem(exc: Exception) -> str:
    """The first line of PostgreSQL's answer and what to do about it."""
    import psycopg

    reason = _pg_reason(exc)
    state = getattr(exc, "sqlstate", None) or ""
    if state == "42501":  # insufficient_privilege
        return (f"{reason} (grant SELECT, INSERT, UPDATE, DELETE on {TOKENS_TABLE} and {MARKS_TABLE} "
                "to this database user)")
    if state == "25006":  # read_only_sql_transaction: a standby, or default_transaction_read_only
        return f"{reason} (the database only allows reads: point token_store at the primary)"
    if state.startswith("53"):  # insufficient resources: disk full, out of memory, too many connections
        return f"{reason} (the database server is out of resources: free disk space or connections)"
    if isinstance(exc, psycopg.OperationalError) and not state:
        return f"{reason} (check that the database server is running and reachable from here)"
    return reason
