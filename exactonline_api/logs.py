"""Quiet logs by default: the SDK's routine chatter moves to DEBUG, nothing is thrown away.

A clean run should read as: a start line, about one line per stream and division, the waits that
matter, and the run summary. The SDK logs far more at INFO: a METRIC line per request and per
stream, one "Skipping deselected stream" line for each of the ~270 streams not selected, and a
WARNING per unsorted partition. None of it is wrong, so those lines are demoted to DEBUG and come
back with ``LOGLEVEL=DEBUG`` (or ``TAP_EXACTONLINE_LOGLEVEL=DEBUG``), and the METRIC lines also
with the ``metrics_log_level: INFO`` setting.

How: :class:`QuietFilter` goes on the root logger's handlers right after the SDK set up its
console logging, whichever config that came from: the SDK's default, the user's
``SINGER_SDK_LOG_CONFIG``, or the one Meltano writes for every plugin it runs (Meltano sets
``SINGER_SDK_LOG_CONFIG`` itself, so a config file of ours would never be read there). A handler
filter, because the SDK logs from one logger per stream (``tap-exactonline.accounts``), which a
filter on a parent logger never sees.
"""

from __future__ import annotations

import logging

METRICS_LOGGER = "singer_sdk.metrics"  # singer_sdk.metrics.METRICS_LOGGER_NAME, without importing the SDK
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
        if record.name == METRICS_LOGGER:
            return self._demote(record, self.metrics_level)
        if record.levelno <= logging.WARNING and record.getMessage().startswith(_CHATTY):
            return self._demote(record, logging.DEBUG)
        return True

    @staticmethod
    def _demote(record: logging.LogRecord, level: int) -> bool:
        if level < record.levelno:
            record.levelno, record.levelname = level, logging.getLevelName(level)
        return logging.getLogger().isEnabledFor(record.levelno)


def quiet_console() -> None:
    """Call right after the SDK set up its console logging (reading ``Plugin.cli`` does that)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, QuietFilter) for f in handler.filters):
            handler.addFilter(QuietFilter())


def show_metrics_at(level: str | None) -> None:
    """Apply the ``metrics_log_level`` setting: INFO shows the METRIC lines in every run."""
    QuietFilter.metrics_level = logging.INFO if (level or "").upper() == "INFO" else logging.DEBUG
