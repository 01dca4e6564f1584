"""How the tap and the target end: one line on stderr and an exit code a scheduler can read."""

from __future__ import annotations

import sys
from collections.abc import Callable

from exactonline_api import redact
from exactonline_api.errors import DailyBudgetExhausted, ExactError

# EX_TEMPFAIL: the run stopped on purpose to keep the daily reserve and the next
# run resumes; schedulers can tell it apart from a failure (exit 1).
EXIT_BUDGET_STOP = 75


def run_plugin(name: str, command: Callable[[], object]) -> None:
    redact.install()
    try:
        command()
    except DailyBudgetExhausted as exc:
        print(f"{name}: daily budget stop: {exc}", file=sys.stderr)
        sys.exit(EXIT_BUDGET_STOP)
    except ExactError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(1)
