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
is one hour's count lost, never a stopped run).
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
    """Counted errors per (division, endpoint) in the last hour, in a file shared by tap and target."""

    def __init__(self, path: str | os.PathLike, *, per_hour: int = DEFAULT_HOURLY_ERRORS,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.per_hour = per_hour
        self.clock = clock
        self._seen: tuple[float, int] | None = None  # (mtime, size) of the file behind _errors
        self._errors: dict[str, list[float]] = {}

    @classmethod
    def from_config(cls, config: Mapping, clock: Callable[[], float] = time.time) -> ErrorBudget:
        return cls(beside_token_store(config, SUFFIX), per_hour=hourly_errors_setting(config), clock=clock)

    @staticmethod
    def _key(division: int, endpoint: str) -> str:
        return f"{division} {endpoint}"

    def recent(self, division: int, endpoint: str) -> list[float]:
        """Times of the counted errors of the last hour on this endpoint (oldest first)."""
        self._refresh()
        oldest = self.clock() - WINDOW_SECONDS
        return [t for t in self._errors.get(self._key(division, endpoint), []) if t > oldest]

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
        if status not in COUNTED_STATUSES:
            return
        self.add(division, endpoint, self.clock())

    def spend_all(self, division: int, endpoint: str) -> None:
        """Exact said the endpoint is blocked: spend the whole budget now, so nothing is sent for an hour."""
        now = self.clock()
        for _ in range(self.per_hour):
            self.add(division, endpoint, now)

    def add(self, division: int, endpoint: str, moment: float) -> None:
        try:
            with self._locked():
                errors = self._load()
                oldest = moment - WINDOW_SECONDS
                errors = {k: [t for t in v if t > oldest] for k, v in errors.items()}
                errors.setdefault(self._key(division, endpoint), []).append(moment)
                self._save({k: v for k, v in errors.items() if v})
        except OSError as exc:
            # The run goes on with the count in memory; only later runs lose it.
            self._errors.setdefault(self._key(division, endpoint), []).append(moment)
            LOG.warning("error budget %s could not be saved (%s); counted for this run only", self.path,
                        exc.strerror or type(exc).__name__)

    # -- the file ----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._errors = None, {}
            return
        seen = (stat.st_mtime, stat.st_size)
        if seen != self._seen:
            self._errors = self._load()
            self._seen = seen

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
