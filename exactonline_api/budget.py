"""The error budget: this app's share of Exact's hourly error limit, kept across runs.

Exact blocks an endpoint for an hour (per app, user, division and endpoint) after more than 10
answers 400/401/403/404 on it within an hour, and the block grows while errors go on. A count per
run is not enough: two runs of the same refused records reach the limit, and the block then hits
the tap and the target alike, because they use one app. So every counted error is written to a
small file next to the token store, shared by every tap and target run of that token store, and
a call is not made once the errors of the last hour on its (division, endpoint) reached the
budget (``hourly_error_budget``, default 5 of Exact's 10: the rest is headroom for other
processes on the same app key and for our own unknowns).

The file holds division codes, endpoint paths and times only. It is rewritten atomically under an
``flock`` on a sibling ``.lock`` file; a damaged file is logged and started afresh (the worst case
is one hour's count lost, never a stopped run). With a PostgreSQL token store the counts live in a
table of that database instead, so machines sharing the token chain share the budget.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from exactonline_api.answers import COUNTED_STATUSES
from exactonline_api.errors import ConfigError, ErrorBudgetSpent
from exactonline_api.filelock import wait_for_flock
from exactonline_api.tokens import default_store_path

LOG = logging.getLogger("exactonline_api.budget")

EXACT_ERRORS_PER_HOUR = 10
DEFAULT_HOURLY_ERRORS = 5
WINDOW_SECONDS = 3600.0
SUFFIX = ".error-budget.json"
LOCK_TIMEOUT = 30.0


def beside_token_store(config: Mapping, suffix: str) -> Path:
    """``<token store file name without .json><suffix>`` next to the token store file.

    A PostgreSQL store has no folder: the file goes where the default token file would be.
    """
    spec = str(config.get("token_store") or "").strip()
    if spec and "://" not in spec:
        store = Path(os.path.expandvars(os.path.expanduser(spec)))
        if store.is_dir():
            store = store / default_store_path(str(config.get("client_id") or "")).name
    else:
        store = default_store_path(str(config.get("client_id") or ""))
    name = store.name[:-5] if store.name.endswith(".json") else store.name
    return store.with_name(name + suffix)


def hourly_errors_setting(config: Mapping) -> int:
    value = config.get("hourly_error_budget")
    if value is None:
        return DEFAULT_HOURLY_ERRORS
    if not isinstance(value, int) or not 1 <= value < EXACT_ERRORS_PER_HOUR:
        raise ConfigError(f"hourly_error_budget {value!r} must be a whole number from 1 to "
                          f"{EXACT_ERRORS_PER_HOUR - 1} (Exact blocks an endpoint after {EXACT_ERRORS_PER_HOUR} "
                          "errors in an hour)")
    return value


class ErrorBudget:
    """Counted errors per (division, endpoint) in the last hour, shared by tap and target runs."""

    def __init__(self, store: str | os.PathLike | ErrorStore, *, per_hour: int = DEFAULT_HOURLY_ERRORS,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store if isinstance(store, (FileErrors, PostgresErrors)) else FileErrors(Path(store))
        self.per_hour = per_hour
        self.clock = clock

    @classmethod
    def from_config(cls, config: Mapping, clock: Callable[[], float] = time.time) -> ErrorBudget:
        """Beside the token store: a file next to the token file, or a table in its PostgreSQL database."""
        spec = str(config.get("token_store") or "").strip()
        store: ErrorStore
        if spec.startswith(("postgresql://", "postgres://")):
            store = PostgresErrors(spec, str(config.get("client_id") or ""))
        else:
            store = FileErrors(beside_token_store(config, SUFFIX))
        return cls(store, per_hour=hourly_errors_setting(config), clock=clock)

    @property
    def path(self) -> Path | None:
        return getattr(self.store, "path", None)

    @staticmethod
    def _key(division: int, endpoint: str) -> str:
        return f"{division} {endpoint}"

    def recent(self, division: int, endpoint: str) -> list[float]:
        """Times of the counted errors of the last hour on this endpoint (oldest first)."""
        oldest = self.clock() - WINDOW_SECONDS
        return sorted(t for t in self.store.current().get(self._key(division, endpoint), []) if t > oldest)

    def retry_at(self, division: int, endpoint: str) -> float | None:
        """When a call is allowed again; None when it is allowed now."""
        times = self.recent(division, endpoint)
        if len(times) < self.per_hour:
            return None
        return times[len(times) - self.per_hour] + WINDOW_SECONDS

    def check(self, division: int, endpoint: str) -> None:
        """Raise :class:`ErrorBudgetSpent` (nothing is sent) when the budget of the hour is used up."""
        retry = self.retry_at(division, endpoint)
        if retry is not None:
            raise ErrorBudgetSpent(division, endpoint, retry)

    def note(self, division: int, endpoint: str, status: int) -> None:
        """Count an answer Exact counts (400/401/403/404)."""
        if status in COUNTED_STATUSES:
            self.store.add(self._key(division, endpoint), [self.clock()], WINDOW_SECONDS)

    def spend_all(self, division: int, endpoint: str) -> None:
        """Exact said the endpoint is blocked: spend the whole budget now, so nothing is sent for an hour."""
        self.store.add(self._key(division, endpoint), [self.clock()] * self.per_hour, WINDOW_SECONDS)


class FileErrors:
    """The counts in a JSON file, rewritten atomically under an ``flock`` on a sibling ``.lock`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._seen: tuple[float, int] | None = None  # (mtime, size) of the file behind _errors
        self._errors: dict[str, list[float]] = {}

    def current(self) -> dict[str, list[float]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return self._errors if self._seen is None else {}
        seen = (stat.st_mtime, stat.st_size)
        if seen != self._seen:
            self._errors = self._load()
            self._seen = seen
        return self._errors

    def add(self, key: str, moments: list[float], window: float) -> None:
        try:
            with self._locked():
                oldest = max(moments) - window
                errors = {k: [t for t in v if t > oldest] for k, v in self._load().items()}
                errors.setdefault(key, []).extend(moments)
                self._save({k: v for k, v in errors.items() if v})
        except OSError as exc:
            # The run goes on with the count in memory; only later runs lose it.
            self._errors.setdefault(key, []).extend(moments)
            LOG.warning("error budget %s could not be saved (%s); counted for this run only", self.path,
                        exc.strerror or type(exc).__name__)

    def _load(self) -> dict[str, list[float]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            errors = raw["errors"]
            return {str(k): sorted(float(t) for t in v) for k, v in errors.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            LOG.warning("error budget %s is unreadable (%s); starting it afresh", self.path, type(exc).__name__)
            return {}

    def _save(self, errors: dict[str, list[float]]) -> None:
        text = json.dumps({"format": "exactonline error budget", "window_seconds": WINDOW_SECONDS,
                           "errors": errors}, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._errors = errors
        stat = self.path.stat()
        self._seen = (stat.st_mtime, stat.st_size)

    @contextlib.contextmanager
    def _locked(self):  # noqa: ANN202
        import fcntl

        self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not wait_for_flock(fd, LOCK_TIMEOUT):
                raise ConfigError(f"waited {LOCK_TIMEOUT:.0f} s for the error budget {self.path}: another run "
                                  "holds its lock; if none runs, delete the .lock file next to it")
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class PostgresErrors:
    """The counts in table ``exactonline_error_budget`` of the token store's PostgreSQL database.

    Several machines that share one token chain (shards) thus share one budget. Reads are cached
    for a few seconds: a call per API call would double the round trips, and errors are rare.
    """

    TABLE = "exactonline_error_budget"
    CACHE_SECONDS = 5.0

    def __init__(self, url: str, client_id: str) -> None:
        self.url = url
        self.client_id = client_id
        self._conn: Any = None  # a psycopg connection, opened on first use
        self._read_at = -1e9
        self._errors: dict[str, list[float]] = {}

    def _connection(self):  # noqa: ANN202
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.TABLE,))
                self._conn.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (client_id text NOT NULL, "
                                   "budget_key text NOT NULL, at double precision NOT NULL)")
        return self._conn

    def current(self) -> dict[str, list[float]]:
        if time.monotonic() - self._read_at < self.CACHE_SECONDS:
            return self._errors
        try:
            rows = self._connection().execute(f"SELECT budget_key, at FROM {self.TABLE} WHERE client_id = %s",
                                              (self.client_id,)).fetchall()
        except Exception as exc:  # noqa: BLE001  psycopg's errors; the count in memory still holds
            LOG.warning("error budget in PostgreSQL not readable (%s); using this run's count",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            return self._errors
        errors: dict[str, list[float]] = {}
        for key, at in rows:
            errors.setdefault(key, []).append(float(at))
        self._errors, self._read_at = errors, time.monotonic()
        return errors

    def add(self, key: str, moments: list[float], window: float) -> None:
        self._errors.setdefault(key, []).extend(moments)
        try:
            conn = self._connection()
            with conn.transaction():
                conn.execute(f"DELETE FROM {self.TABLE} WHERE client_id = %s AND at <= %s",
                             (self.client_id, max(moments) - window))
                with conn.cursor() as cursor:
                    cursor.executemany(f"INSERT INTO {self.TABLE} (client_id, budget_key, at) VALUES (%s, %s, %s)",
                                       [(self.client_id, key, at) for at in moments])
        except Exception as exc:  # noqa: BLE001
            LOG.warning("error budget in PostgreSQL not saved (%s); counted for this run only",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        self._read_at = -1e9  # read the others' errors too before the next call


ErrorStore = FileErrors | PostgresErrors
