"""The file token store: a JSON document, mode 0600, replaced atomically, locked with ``flock``.

Files beside the store (``tokens.json`` here):

* ``tokens.json.lock``: the lock (its own inode, since the store is replaced by rename);
* ``.tokens.json.pending``: space reserved before a refresh is sent; after Exact answered, the new
  document is written into it and it is renamed over the store (:class:`safefile.Reservation`);
* ``tokens.json.recovery``: the new tokens when the store could not be replaced after Exact had
  answered. Under the lock, a recovery or pending copy that holds a valid document issued later
  than the store's is taken over automatically (:func:`tokenset.newest`): that is only safe while the
  store is intact, so a damaged store is never overwritten; the message names the copy instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from exactonline_api import safefile
from exactonline_api.filelock import holder, note_holder, wait_for_flock
from exactonline_api.tokenset import (
    CRASH_ENV,
    RECOVERY_SUFFIX,
    LockDepth,
    TokenSet,
    TokenStoreError,
    check_client,
    crash_point,
    damage,
    damaged_store,
    document,
    encode,
    newest,
    process_label,
    saved_form,
    set_aside_note,
    tokens_from_row,
)

log = logging.getLogger("exactonline_api.tokens")

# Room reserved before a refresh: twice the current document, at least one 4 KiB block. Exact's
# tokens keep their length from one refresh to the next, so the new document fits with room to spare.
_MIN_RESERVE = 4096


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
        self.recovery_path = self.path.with_name(self.path.name + RECOVERY_SUFFIX)
        self.client_id = client_id
        self.lock_timeout = lock_timeout
        self.pending_path = self.path.with_name(f".{self.path.name}.pending")
        self._held = LockDepth()
        self._reservation = safefile.Reservation(self.pending_path)

    def describe(self) -> str:
        return f"file {self.path}"

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------------
    def _mode_fixed(self, mode: int) -> None:
        log.warning("token store %s was readable by other users (mode %04o); set it to 0600", self.path, mode)

    def _read_doc(self) -> dict | None:
        data = safefile.read_private(self.path, self._mode_fixed)
        if data is None:
            return None
        doc, reason = damage(data)
        if doc is None:
            copies = self._copies()
            raise damaged_store(str(self.path), reason, copies[0][0] if copies else None)
        check_client(doc.get("client_id"), self.client_id, str(self.path))
        return doc

    def read(self) -> TokenSet | None:
        return tokens_from_row(self._read_doc() or {})

    def _copies(self) -> list[tuple[Path, TokenSet]]:
        """Valid token documents of this client in the recovery and pending files."""
        found = []
        for path in (self.recovery_path, self.pending_path):
            with contextlib.suppress(OSError, TokenStoreError):
                data = safefile.read_private(path, self._mode_fixed)
                doc, _ = damage(data or b"")
                if doc is not None and doc.get("client_id") == self.client_id and (tokens := tokens_from_row(doc)):
                    found.append((path, tokens))
        return found

    # -- locking ------------------------------------------------------------------------------------
    def _open_lock(self) -> int:
        try:
            self._ensure_dir()
            # O_NOFOLLOW: the holder's note is written into this file; never into what a planted link names.
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT | safefile.NO_LINKS, 0o600)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES) and self.lock_path.is_file():
                # flock works on a read-only descriptor: the tokens can still be read under the lock
                # (and used while valid); only a refresh needs to write, and says so when it cannot.
                with contextlib.suppress(OSError):
                    return os.open(self.lock_path, os.O_RDONLY | safefile.NO_LINKS)
            raise safefile.problem(exc, "create the token store lock", self.lock_path) from None

    @contextlib.contextmanager
    def locked(self, *, replacing: bool = False) -> Iterator[TokenSet | None]:
        import fcntl

        if self._held.depth:
            raise RuntimeError("FileTokenStore.locked() is not re-entrant")
        fd = self._open_lock()
        try:
            try:
                taken = wait_for_flock(fd, self.lock_timeout)
            except OSError as exc:
                raise safefile.problem(exc, "lock", self.lock_path) from None
            if not taken:
                raise TokenStoreError(
                    f"waited {self.lock_timeout:.0f} s for the token store lock {self.lock_path}; another process "
                    f"holds it ({holder(self.lock_path) or 'a hung run?'}): stop it and try again")
            note_holder(fd, process_label())
            self._held.enter()
            self._reservation = safefile.Reservation(self.pending_path)
            try:
                self._remove_stale_temp_files()
                yield None if replacing else self._take_over_copies()
            finally:
                self._reservation.close(discard=True)
                self._held.leave()
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _take_over_copies(self) -> TokenSet | None:
        stored = self.read()
        copies = self._copies()
        best = newest(stored, *(tokens for _, tokens in copies))
        if best is stored:
            # Copies older than the store were refreshed from already or superseded by a login; a
            # pending file that is no copy is the placeholder of a refresh that never got an answer.
            for path in (self.recovery_path, self.pending_path):
                with contextlib.suppress(OSError):
                    path.unlink()
            return stored
        assert best is not None  # a copy is newer than the store
        try:
            self.write(best)
        except (OSError, TokenStoreError) as exc:
            log.warning("using the newer tokens saved in %s; the store %s still cannot be written (%s)",
                        next(p for p, t in copies if t is best), self.path, exc)
            return best
        log.warning("took over the newer tokens saved in %s into %s",
                    next(p for p, t in copies if t is best), self.path)
        for path, _ in copies:
            with contextlib.suppress(OSError):
                path.unlink()
        return best

    def _require_lock(self, what: str) -> None:
        if not self._held.depth:
            raise RuntimeError(f"FileTokenStore.{what}() must be called inside locked()")

    # -- writing ------------------------------------------------------------------------------------
    def reserve_write(self, current: TokenSet | None) -> None:
        self._require_lock("reserve_write")
        estimate = len(encode(document(current or TokenSet("", 0.0, "", 0.0), self.client_id)))
        size = max(_MIN_RESERVE, -(-2 * estimate // _MIN_RESERVE) * _MIN_RESERVE)
        try:
            self._reservation.reserve(size)
        except FileExistsError:
            raise TokenStoreError(
                f"{self.pending_path} holds newer tokens that could not be moved into the store {self.path}: make "
                f"{self.path.parent} writable (see the warning above); nothing was sent to Exact") from None
        except OSError as exc:
            raise TokenStoreError(
                str(safefile.problem(exc, "reserve room for the refreshed tokens in", self.pending_path))
                + "; nothing was sent to Exact, the stored tokens are unchanged") from None

    def write(self, tokens: TokenSet) -> None:
        self._require_lock("write")
        data = saved_form(tokens, self.client_id)
        if os.environ.get(CRASH_ENV) == "during_store_write":
            self._crash_half_written(data)
        reservation = self._reservation
        try:
            if reservation.active:
                reservation.fill(data)
                crash_point("before_store_rename")
                reservation.commit(self.path)
            else:
                self._write_bytes(data)
        except OSError as exc:
            raise safefile.problem(exc, "write token store", self.path) from None
        # Saved: copies set aside earlier are older now (and their refresh token is dead).
        for stale in (self.recovery_path, reservation.pending):
            with contextlib.suppress(OSError):
                stale.unlink()

    def rescue(self, tokens: TokenSet) -> str | None:
        self._require_lock("rescue")
        where = self._set_aside(tokens)
        return None if where is None else set_aside_note(where, f"{self.path}", f"mv {where} {self.path}")

    def _set_aside(self, tokens: TokenSet) -> Path | None:
        data = saved_form(tokens, self.client_id)
        reservation = self._reservation
        # The pending file already holds them when only the rename failed: renaming is all it takes.
        if reservation.filled:
            reservation.close()
            with contextlib.suppress(OSError):
                os.replace(reservation.pending, self.recovery_path)
                return self.recovery_path
        with contextlib.suppress(OSError):
            fd = os.open(self.recovery_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | safefile.NO_LINKS,
                         safefile.PRIVATE)
            try:
                os.fchmod(fd, safefile.PRIVATE)
                safefile.write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            return self.recovery_path
        if reservation.filled and reservation.pending.exists():
            return reservation.pending
        return None

    def mark_refresh_started(self, by: str) -> None:
        self._require_lock("mark_refresh_started")
        try:
            before: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            before = None
        self._held.has_before, self._held.before_mark = True, before
        doc = self._read_doc() or {"client_id": self.client_id}
        doc["refresh_started_at"] = time.time()
        doc["refresh_started_by"] = by
        self._write_doc(doc)

    def clear_refresh_mark(self) -> None:
        self._require_lock("clear_refresh_mark")
        if not self._held.has_before:
            return
        before = self._held.before_mark
        if before is None:  # the store was empty before the mark
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        elif isinstance(before, bytes):
            self._write_doc_bytes(before)

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

    def _write_doc(self, doc: dict) -> None:
        doc["written_at"] = time.time()
        self._write_doc_bytes(encode(doc))

    def _write_doc_bytes(self, data: bytes) -> None:
        try:
            self._write_bytes(data)
        except OSError as exc:
            raise safefile.problem(exc, "write token store", self.path) from None

    def _write_bytes(self, data: bytes) -> None:
        self._ensure_dir()
        temp = self.path.parent / f"{self._temp_prefix()}{os.getpid()}.{threading.get_ident()}.tmp"
        safefile.replace_atomically(self.path, data, temp)

    def _crash_half_written(self, data: bytes) -> None:
        temp = self.path.parent / f"{self._temp_prefix()}{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, safefile.PRIVATE)
        os.write(fd, data[: len(data) // 2])
        os.fsync(fd)
        crash_point("during_store_write")
