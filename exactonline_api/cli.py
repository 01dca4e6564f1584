"""How the tap and the target start and end: quiet logs, one line on stderr, an exit code a scheduler can read."""

from __future__ import annotations

import sys
from typing import Any

from exactonline_api import logs, redact
from exactonline_api.errors import DailyBudgetExhausted, ExactError

# EX_TEMPFAIL: the run stopped on purpose to keep the daily reserve and the next
# run resumes; schedulers can tell it apart from a failure (exit 1).
EXIT_BUDGET_STOP = 75


def run_plugin(name: str, plugin: Any, *, epilog: str | None = None) -> None:
    """Run ``plugin``'s Singer CLI (a singer-sdk plugin class; no SDK import here); ``epilog`` ends its ``--help``."""
    redact.install()
    command = plugin.cli  # reading it sets up the SDK's console logging
    logs.quiet_console()
    if epilog:
        command.epilog = epilog
    try:
        command()
    except DailyBudgetExhausted as exc:
        print(f"{name}: daily budget stop: {exc}", file=sys.stderr)
        sys.exit(EXIT_BUDGET_STOP)
    except ExactError as exc:
        # Several bad settings: one line each (BadSettings.lines), so the last line names a setting too.
        for line in getattr(exc, "lines", None) or [str(exc)]:
            print(f"{name}: {line}", file=sys.stderr)
        sys.exit(1)
