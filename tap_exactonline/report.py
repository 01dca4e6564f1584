"""What a run did, per division: stops, failures, unfinished streams, records, calls.

Kept apart from the tap object so that streams, the resync planner and the
summary only share this ledger, not the tap. Written from the main thread only
(the parallel reader hands errors to it), so it needs no lock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from exactonline_api.errors import DailyBudgetExhausted, ExactError
from exactonline_api.limits import DivisionBudget

LOG = logging.getLogger("tap_exactonline")


class RunReport:
    def __init__(self) -> None:
        self.stopped: dict[int, str] = {}
        self.failed: list[str] = []
        self.unfinished: dict[int, list[str]] = {}
        self.failed_streams: set[tuple[int, str]] = set()
        self.records: dict[tuple[int, str], int] = {}
        self.refused_divisions: dict[int, str] = {}  # configured but not granted: never read

    # -- during the run ----------------------------------------------------------------------

    def count(self, division: int, stream: str, n: int = 1) -> None:
        key = (division, stream)
        self.records[key] = self.records.get(key, 0) + n

    def stop_division(self, division: int, stream: str, reason: Exception) -> None:
        if division not in self.stopped:
            self.stopped[division] = str(reason)
            LOG.warning("stopping division %s at stream %s: %s", division, stream, reason)
        self.note_unfinished(division, stream)

    def note_unfinished(self, division: int, stream: str) -> None:
        self.unfinished.setdefault(division, []).append(stream)

    def fail_stream(self, division: int, stream: str, reason: Exception) -> None:
        """A stream failed for one division (e.g. a module the license lacks); the others go on."""
        self.failed.append(f"{stream} in division {division}: {reason}")
        self.failed_streams.add((division, stream))
        LOG.error("%s division %s failed, continuing with the other streams: %s", stream, division, reason)

    def division_stopped(self, division: int) -> bool:
        return division in self.stopped

    def unfinished_divisions(self, stream: str) -> list[int]:
        """Divisions this run did not read to the end for ``stream`` (budget stop or failure)."""
        stopped = {d for d, names in self.unfinished.items() if stream in names}
        return sorted(stopped | {d for d, s in self.failed_streams if s == stream})

    # -- at the end ----------------------------------------------------------------------------

    def summaries(self, budgets: Iterable[DivisionBudget]) -> list[dict]:
        out = []
        for budget in sorted(budgets, key=lambda b: b.division):
            line = budget.summary()
            line["records"] = {s: n for (d, s), n in sorted(self.records.items()) if d == budget.division}
            if budget.division in self.stopped:
                line["stopped"] = self.stopped[budget.division]
            out.append(line)
        return out

    def log_summary(self, budgets: Iterable[DivisionBudget]) -> None:
        """One JSON line per division (machines), then a table (people)."""
        summaries = self.summaries(budgets)
        for line in summaries:
            LOG.info("run summary: %s", json.dumps(line, separators=(", ", ": ")))
        if summaries:
            LOG.info("run summary table:\n%s", summary_table(summaries))

    def raise_for_outcome(self) -> None:
        refused = (f"division(s) {', '.join(map(str, self.refused_divisions))} not read: not granted to this app "
                   "(run `tap-exactonline auth` again and tick them); " if self.refused_divisions else "")
        if self.failed:
            raise ExactError(f"{refused}{len(self.failed)} stream(s) failed (state kept for the others): "
                             + " | ".join(self.failed))
        if refused:
            raise ExactError(f"{refused}the other divisions were read and their state saved")
        if self.stopped:
            raise DailyBudgetExhausted(
                "stopped before the end to keep the daily call reserve; unfinished: "
                + "; ".join(f"division {d}: {', '.join(s)}" for d, s in sorted(self.unfinished.items()))
                + ". State is saved: the next run resumes there.")


def summary_table(summaries: list[dict]) -> str:
    head = ("division", "records", "calls", "retries", "waits", "waited s", "daily left")
    rows = [head]
    for line in summaries:
        left = line.get("daily_remaining")
        rows.append((str(line["division"]), f"{sum(line['records'].values()):,}", str(line["calls"]),
                     str(line["retries"]), str(line["waits"]), str(line["waited_seconds"]),
                     "?" if left is None else f"{left:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)
