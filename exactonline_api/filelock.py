"""Waiting for an exclusive ``flock``: the token store and the target's ledger share it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone


def wait_for_flock(
    fd: int,
    timeout: float,
    *,
    max_delay: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Take an exclusive lock on ``fd`` within ``timeout`` seconds; False when it stays taken.

    Polls with growing pauses instead of blocking, so a hung holder turns into a
    clear error after the timeout rather than a run that never ends. Any other failure
    (ENOLCK on a file system without locks, a bad descriptor) is raised as the OSError it is,
    for the caller to turn into one line naming its file.
    """
    import fcntl

    deadline = clock() + max(0.0, timeout)
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            left = deadline - clock()
            if left <= 0:
                return False
            sleep(min(delay, left))
            delay = min(delay * 2, max_delay)


def note_holder(fd: int, who: str) -> None:
    """Write who holds the lock into the lock file, for the message of whoever waits in vain.

    Best effort: a lock file opened read-only (a read-only store) just keeps the older note.
    """
    note = f"{who} since {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%SZ')}\n".encode()
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)


def holder(path: str | os.PathLike) -> str:
    """The note of the lock's holder (see :func:`note_holder`), or "" when there is none."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(200).decode("utf-8", "replace")
    except OSError:
        return ""
    line = text.splitlines()[0] if text.strip() else ""
    return "".join(ch for ch in line if ch.isprintable()).strip()
