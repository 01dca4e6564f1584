"""Several divisions read at once: threads fetch pages, the main thread does all the rest.

Exact's limits are per division and a page takes it a second or more, so a
serial tap mostly waits. Here each division of a stream gets a reader thread
(at most ``parallel_divisions`` at a time) that makes that division's calls:
its own rate limiter budget and daily reserve apply, its waits hold up only
itself, and a budget stop or failure ends only its own job.

Everything that touches Singer stays on the main thread: records, bookmarks,
STATE. A reader hands over whole pages through a bounded queue, so memory holds
a few pages, and the main thread sees each division's events in order
(``start``, ``page``..., then ``end`` or ``error``). A bookmark can therefore
only move past records that were already written, whatever the interleaving.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

START, PAGE, END, ERROR = "start", "page", "end", "error"
# A reader mostly waits for Exact (a page takes it a second or more), while the main
# thread needs ~40 ms of CPU per 1,000-row page: 8 readers keep it busy at a few
# percent of one core, in a few dozen MB (the queue holds at most 2 pages per reader).
DEFAULT_PARALLEL_DIVISIONS = 8
MAX_PARALLEL_DIVISIONS = 16  # beyond this the tap's one core, not Exact, is the limit
_POLL_SECONDS = 0.5  # how often the main thread wakes up to print progress while it waits


@dataclass
class DivisionJob:
    """One division of one stream: ``prepare`` and ``pages`` run on a reader thread."""

    context: dict
    prepare: Callable[[], Any]  # the calls before the first page (e.g. a SyncTimestamp)
    pages: Callable[[Any], Iterator[list]]  # pages of rows, given what prepare returned


class _Cancelled(Exception):
    pass


def read_divisions(
    jobs: Sequence[DivisionJob], workers: int, *, idle: Callable[[], None] = lambda: None,
) -> Generator[tuple[str, dict, Any], None, None]:
    """Events ``(kind, context, value)`` of all jobs as they come; see the module docstring.

    ``idle`` is called about every half second while no event arrives (progress lines).
    Closing the iterator early (an exception in the caller) stops the readers after
    their current call.
    """
    if not jobs:
        return
    events: queue.Queue = queue.Queue(maxsize=2 * workers + 2)
    cancel = threading.Event()

    def put(event: tuple[str, dict, Any]) -> None:
        while not cancel.is_set():
            try:
                events.put(event, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue
        raise _Cancelled

    def run(job: DivisionJob) -> None:
        try:
            if cancel.is_set():
                return
            prepared = job.prepare()
            put((START, job.context, prepared))
            for rows in job.pages(prepared):
                put((PAGE, job.context, rows))
            put((END, job.context, None))
        except _Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001  (handed to the main thread, which decides)
            try:
                put((ERROR, job.context, exc))
            except _Cancelled:
                pass

    pool = ThreadPoolExecutor(max(1, min(workers, len(jobs))), thread_name_prefix="exact-division")
    try:
        for job in jobs:
            pool.submit(run, job)
        open_jobs = len(jobs)
        while open_jobs:
            try:
                event = events.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                idle()
                continue
            if event[0] in (END, ERROR):
                open_jobs -= 1
            yield event
    finally:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
