"""Private files that fail safe: atomic replacement, space reserved in advance, and one plain line
for every way a machine can refuse (full disk, read-only file system, no permission).

The OS-level half of the file token store (:mod:`exactonline_api.token_file`): no token logic here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from exactonline_api.errors import ExactError
from exactonline_api.tokenset import TokenStoreError

# Test-only fault injection: EXACT_TEST_FAIL_AT=<point>[:<errno name>][,...] makes that step raise the
# OSError a broken machine would (default ENOSPC). Points: ``reserve``, ``fill``, ``commit`` (the
# refreshed tokens), ``replace`` (any other store write), ``chmod``.
FAIL_ENV = "EXACT_TEST_FAIL_AT"

PRIVATE = 0o600
# Never follow a link to open a secret file: in a shared folder a planted link would send the
# tokens (or a truncation) wherever it points.
NO_LINKS = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def fault_point(name: str, path: Path) -> None:
    for spec in os.environ.get(FAIL_ENV, "").split(","):
        point, _, code = spec.partition(":")
        if point == name:
            number = getattr(errno, code or "ENOSPC")
            raise OSError(number, os.strerror(number), str(path))


def _advice(exc: OSError, path: Path, setting: str) -> str:
    where = path.parent if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOENT) else path
    advice = {
        errno.ENOSPC: f"no space left on the device holding {path.parent}: free some space",
        errno.EDQUOT: f"the disk quota for {path.parent} is used up: free some space",
        errno.EROFS: f"{path.parent} is on a read-only file system: make it writable or point token_store elsewhere",
        errno.EACCES: f"permission denied on {where}: give this user (uid {os.geteuid()}) write access "
                      "or point token_store elsewhere",
        errno.EPERM: f"operation not permitted on {where}: give this user (uid {os.geteuid()}) access "
                     "or point token_store elsewhere",
        errno.ENOENT: f"{where} does not exist: create it or point token_store elsewhere",
        errno.EISDIR: f"{path} is a directory: remove it or point token_store elsewhere",
        errno.ENOTDIR: f"a part of {path.parent} is a file, not a directory: point token_store elsewhere",
        errno.ENOLCK: f"the file system holding {path.parent} does not support locks: put token_store on a "
                      "local disk or use a postgresql:// token store",
        errno.EIO: f"the device holding {path.parent} reported an I/O error: check the disk",
        errno.ELOOP: f"{path} is a symbolic link: remove it (it is made again as a plain file)",
    }.get(exc.errno or 0, f"{exc.strerror or type(exc).__name__}: check {path.parent}")
    return advice.replace("token_store elsewhere", f"{setting} elsewhere")


def problem(exc: OSError, doing: str, path: Path, *, setting: str = "token_store",
            error: type[ExactError] = TokenStoreError) -> ExactError:
    """One line saying what failed, why, and what to do; never a traceback. ``setting``: the config
    setting that moves the file elsewhere."""
    reason = exc.strerror or type(exc).__name__
    return error(f"cannot {doing} {path} ({reason}): {_advice(exc, path, setting)}")


def fsync_dir(directory: Path) -> None:
    # A rename or a new file is only durable once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes, offset: int = 0) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def replace_atomically(path: Path, data: bytes, temp: Path) -> None:
    """Write ``data`` to ``temp`` (new, 0600), fsync, rename over ``path``: readers see old or new, whole."""
    # O_EXCL + 0600: the file is never readable by others, not even for a moment.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fault_point("replace", path)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def read_private(path: Path, on_fixed) -> bytes | None:
    """The file's bytes (None if absent); a file others may read is set to 0600 first.

    ``on_fixed(old_mode)`` is told when the mode was changed. A mode that cannot be changed raises:
    the caller must not use a secret that others can read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | NO_LINKS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            # Every save replaces the file by rename, which would turn the link into a plain file.
            raise TokenStoreError(
                f"token store {path} is a symbolic link: point token_store at the file itself") from None
        raise problem(exc, "read token store", path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenStoreError(f"token store {path} is not a file: point token_store at a file")
        mode = info.st_mode & 0o777
        if mode & 0o077:
            try:
                fault_point("chmod", path)
                os.fchmod(fd, PRIVATE)
            except OSError as exc:
                raise TokenStoreError(
                    f"token store {path} is readable by other users (mode {mode:04o}) and its mode cannot be "
                    f"changed ({exc.strerror}): run `chmod 600 {path}` as its owner; it is not used until then"
                ) from None
            on_fixed(mode)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise problem(exc, "read token store", path) from None
    finally:
        os.close(fd)


class Reservation:
    """Space for the next version of a file, taken before anything irreversible happens.

    ``reserve`` creates ``pending`` (0600) with ``size`` bytes written and synced, so the blocks are
    ours: a disk that fills up meanwhile cannot stop ``commit``, which overwrites those bytes in
    place and renames the file over the target. Until ``commit`` the placeholder is NUL bytes, which
    no reader takes for content; content written but not renamed is a complete document followed by
    NUL padding at most (readers strip it).
    """

    def __init__(self, pending: Path) -> None:
        self.pending = pending
        self._fd: int | None = None
        self.filled = False  # the pending file holds the complete new content, synced

    def reserve(self, size: int) -> None:
        # O_EXCL: a pending file still there holds content its owner could not put in place.
        self.filled = False
        fd = os.open(self.pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | NO_LINKS, PRIVATE)
        try:
            fault_point("reserve", self.pending)
            write_all(fd, b"\0" * size)
            os.fsync(fd)
            fsync_dir(self.pending.parent)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.pending)
            raise
        self._fd = fd

    @property
    def active(self) -> bool:
        return self._fd is not None

    def fill(self, data: bytes) -> None:
        """Put ``data`` in the reserved file, durably; the file is not yet in place."""
        assert self._fd is not None, "fill() needs reserve() first"
        fault_point("fill", self.pending)
        write_all(self._fd, data)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)
        self.filled = True

    def commit(self, target: Path) -> None:
        """Rename the filled file over ``target``; afterwards nothing is pending."""
        fault_point("commit", target)
        os.replace(self.pending, target)
        self.close()
        fsync_dir(target.parent)

    def close(self, *, discard: bool = False) -> None:
        """Let go of the file; ``discard`` also removes it (unless it holds content worth keeping)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if discard and not self.filled:
            with contextlib.suppress(OSError):
                os.unlink(self.pending)
