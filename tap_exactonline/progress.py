"""Live progress: now and then, one line per division being read.

A long first load is mostly waiting for Exact; these lines say what the tap is
doing meanwhile: the stream, records so far and their rate, calls used and the
daily budget left, and, while a division waits for Exact's minute window, how
long and why. The clock is injectable so tests decide when lines are due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from exactonline_api.limits import DivisionBudget

LOG = logging.getLogger("tap_exactonline.progress")
EVERY_SECONDS = 15.0


@dataclass
class _Active:
    stream: str
    started: float
    records: int = 0


class Progress:
    def __init__(
        self,
        budget: Callable[[int], DivisionBudget | None],
        *,
        every: float = EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wait_clock: Callable[[], float] = time.time,
        emit: Callable[[str], None] = LOG.info,
    ) -> None:
        self.budget = budget
        self.every = every
        self.clock = clock
        self.wait_clock = wait_clock  # the rate limiter's clock: its wait_until is on it
        self.emit = emit
        self.active: dict[int, _Active] = {}
        self._due = clock() + every

    def start(self, division: int, stream: str) -> None:
        self.active[division] = _Active(stream, self.clock())

    def add(self, division: int, records: int) -> None:
        active = self.active.get(division)
        if active is not None:
            active.records += records

    def end(self, division: int, outcome: str = "done") -> None:
        """A division finished its stream (``done``, ``stopped``, ``failed``): its final line, at once."""
        active = self.active.pop(division, None)
        if active is not None:
            self.emit(self.line(division, active, outcome=outcome))

    def tick(self) -> None:
        """Lines for every active division when ~15 s passed since the last ones."""
        now = self.clock()
        if now < self._due:
            return
        self._due = now + self.every
        for division, active in sorted(self.active.items()):
            self.emit(self.line(division, active))

    def line(self, division: int, active: _Active, *, outcome: str | None = None) -> str:
        elapsed = max(self.clock() - active.started, 1e-9)
        parts = [f"{active.stream} division {division}: {active.records:,} records"
                 + (f" ({outcome})" if outcome else ""), f"{active.records / elapsed:,.0f} rows/s"]
        budget = self.budget(division)
        if budget is not None:
            parts.append(f"{budget.calls} calls")
            if budget.daily_remaining is not None:
                parts.append(f"{budget.daily_remaining:,} daily calls left")
            if budget.wait_reason and budget.wait_until is not None:
                left = max(budget.wait_until - self.wait_clock(), 0.0)
                parts.append(f"waiting {left:.0f} s for Exact's minute window ({budget.wait_reason})")
        return "progress: " + ", ".join(parts)
