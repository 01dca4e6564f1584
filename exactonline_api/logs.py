"""Quiet logs by default, through the SDK's own logging config (``SINGER_SDK_LOG_CONFIG``).

A clean run should read as: a start line, about one line per stream and division, the waits that
matter, and the run summary. The SDK logs far more at INFO: a METRIC line per request and per
stream, one "Skipping deselected stream" line for each of the ~270 streams not selected, and a
WARNING per unsorted partition. None of it is wrong, so nothing is thrown away: those lines are
demoted to DEBUG and come back with ``LOGLEVEL=DEBUG`` (or ``TAP_EXACTONLINE_LOGLEVEL=DEBUG``), and
the METRIC lines also with the ``metrics_log_level: INFO`` setting.

How: the console entry points point ``SINGER_SDK_LOG_CONFIG`` at ``data/logging.yaml`` (unless the
user set their own file, which then wins completely). That file is the SDK's console setup plus
:class:`QuietFilter` on the handler. A handler filter is used because the SDK logs from one logger
per stream (``tap-exactonline.accounts``), which a filter on a parent logger never sees.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from singer_sdk.metrics import METRICS_LOGGER_NAME

LOG_CONFIG_ENV = "SINGER_SDK_LOG_CONFIG"
DEFAULT_LOG_CONFIG = Path(__file__).parent / "data" / "logging.yaml"
METRIC_LEVELS = ("DEBUG", "INFO")

# How the messages an ordinary run repeats per stream or per partition begin. Matched on the
# formatted text: redact.install() formats every record when it is created.
_CHATTY = (
    # ~270 lines, one per stream not selected: the selection is in the catalog already.
    "Skipping deselected stream",
    # The SDK's per-stream and per-partition openers; the run summary names every stream and
    # division with its record count, and the live progress lines say what runs now.
    "Beginning sync of '",
    "Starting incremental sync of '",
    "Starting full table sync of '",
    # Config sources: one line per run, plus one per setting read from the environment.
    "Skipping parse of env var settings...",
    "Parsing env var for settings config...",
    "Parsing '",
    # Bulk and standard endpoints page in key order, not in Modified order (Exact's $orderby
    # would make every page slower), so their bookmark moves when a division's read completes:
    # that is the SDK's "unsorted" mode, chosen on purpose. A run cut short re-reads that one
    # division from its last bookmark; nothing is skipped. Not worth a WARNING on every run.
    "Stream is assumed to be unsorted, progress is not resumable if interrupted",
)


class QuietFilter(logging.Filter):
    """Demotes the SDK's routine INFO/WARNING chatter to DEBUG (dropped unless DEBUG is on)."""

    # Set once per process from the plugin's ``metrics_log_level`` setting (show_metrics_at).
    metrics_level = logging.DEBUG

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == METRICS_LOGGER_NAME:
            return self._demote(record, self.metrics_level)
        if record.levelno <= logging.WARNING and record.getMessage().startswith(_CHATTY):
            return self._demote(record, logging.DEBUG)
        return True

    @staticmethod
    def _demote(record: logging.LogRecord, level: int) -> bool:
        if level < record.levelno:
            record.levelno, record.levelname = level, logging.getLevelName(level)
        return logging.getLogger().isEnabledFor(record.levelno)


def use_quiet_config() -> None:
    """Call before the SDK sets up its console logging (i.e. before ``Plugin.cli`` is read)."""
    os.environ.setdefault(LOG_CONFIG_ENV, str(DEFAULT_LOG_CONFIG))


def show_metrics_at(level: str | None) -> None:
    """Apply the ``metrics_log_level`` setting: INFO shows the METRIC lines in every run."""
    QuietFilter.metrics_level = logging.INFO if (level or "").upper() == "INFO" else logging.DEBUG
