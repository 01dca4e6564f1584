"""The request log and call counters, so tests count API calls exactly.

Entries hold the logical path (the metadata path, e.g.
``sync/Financial/TransactionLines``) and the query options, never a token,
code or secret.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any


class RequestLog:
    def __init__(self, maxlen: int) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._counts: Counter = Counter()
        self._statuses: dict[tuple, Counter] = {}
        self._seq = 0

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)
            key = (entry["method"], entry["path"], entry.get("division"))
            self._counts[key] += 1
            self._statuses.setdefault(key, Counter())[entry["status"]] += 1

    def entries(self, **filters: Any) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._entries)
        for name, wanted in filters.items():
            items = [e for e in items if _matches(e.get(name), wanted)]
        return items

    def counters(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"method": m, "path": p, "division": d, "count": n,
                 "statuses": {str(s): c for s, c in sorted(self._statuses[(m, p, d)].items())}}
                for (m, p, d), n in sorted(self._counts.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or 0))
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counts.clear()
            self._statuses.clear()

    def resize(self, maxlen: int) -> None:
        with self._lock:
            if maxlen != self._entries.maxlen:
                self._entries = deque(self._entries, maxlen=maxlen)


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, str) and not isinstance(value, str) and value is not None:
        return str(value) == wanted
    return value == wanted
