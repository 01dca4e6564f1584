"""Waiting for an exclusive ``flock``: the token store and the target's ledger share it."""

from __future__ import annotations

import time


def wait_for_flock(fd: int, timeout: float, *, max_delay: float = 0.1) -> bool:
    """Take an exclusive lock on ``fd`` within ``timeout`` seconds; False when it stays taken.

    Polls with growing pauses instead of blocking, so a hung holder turns into a
    clear error after the timeout rather than a run that never ends.
    """
    import fcntl

    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
