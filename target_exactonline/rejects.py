"""The reject file: one JSON line per record that was not written, with the reason.

Lines are appended (a nightly job keeps its history); each carries the run's start time so one
run's rejects can be picked out. Attachment content is never copied into the file, and every line
passes through :func:`exactonline_api.redact.redact_known` (every token and secret this process has seen
is masked).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exactonline_api.redact import redact, redact_known
from target_exactonline.fields import squash

LOG = logging.getLogger("target_exactonline.rejects")

DEFAULT_REJECT_FILE = "target-exactonline-rejects.jsonl"
_BINARY_KEYS = frozenset({"attachment", "content", "base64", "data", "filecontent", "filedata", "logo", "picture"})
_MAX_TEXT = 2000


def sanitized(value: Any, key: str = "") -> Any:
    """A copy of a record fit for a log file: no base64 payloads, no huge strings."""
    if isinstance(value, Mapping):
        return {k: sanitized(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitized(v, key) for v in value]
    if isinstance(value, str):
        if squash(key) in _BINARY_KEYS and value:
            return f"<{len(value)} characters of base64 omitted>"
        if len(value) > _MAX_TEXT:
            return value[:_MAX_TEXT] + f"... <{len(value) - _MAX_TEXT} more characters omitted>"
        return value
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)  # datetimes and the like


class RejectFile:
    def __init__(self, path: str | Path, *, run_started_at: datetime | None = None) -> None:
        self.path = Path(path)
        self.run_started_at = (run_started_at or datetime.now(timezone.utc)).isoformat()
        self.count = 0
        self._lock = threading.Lock()

    def write(
        self,
        stream: str,
        record: Mapping[str, Any],
        reason: str,
        *,
        division: int | None = None,
        key: Mapping[str, Any] | None = None,
    ) -> None:
        line = {
            "stream": stream,
            "division": division,
            "key": sanitized(dict(key)) if key else None,
            "reason": reason,
            "record": sanitized(record),
            "run_started_at": self.run_started_at,
            "rejected_at": datetime.now(timezone.utc).isoformat(),
        }
        # Registered secrets are masked; shapes are not (a CSV column named "code" is data here).
        text = redact_known(json.dumps(line, ensure_ascii=False, default=str))
        with self._lock:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
            self.count += 1
        LOG.warning("%s: rejected%s%s: %s", stream, f" in division {division}" if division else "",
                    f" {_key_text(key)}" if key else "", redact(reason))


def _key_text(key: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in key.items())
