"""Faults on demand: latency, 5xx bursts, dropped connections, malformed pages.

A rule is a dict, set through the ``faults`` knob or ``POST /_sandbox/faults``::

    {"kind": "error", "path": "sync/Financial/TransactionLines", "count": 3, "status": 503}

* ``kind``: ``latency`` (sleep ``ms`` then answer), ``timeout`` (same, meant to be longer than the
  client's timeout), ``error`` (answer ``status``, default 500, without doing the work), ``drop``
  (close the connection before doing the work), ``drop_after`` (do the work, e.g. a POST, then close
  without answering), ``malformed`` (answer 200 with a cut-off JSON body), ``html`` (answer 200 with a
  maintenance page), ``refuse`` (answer ``status``, default 500, with Exact's JSON error object and
  ``message``, as Exact refuses a write on a business rule; nothing is written). A 5xx ``error``
  answers an HTML page: genuine server faults never carry Exact's JSON error message.
* ``path``: logical path prefix (``crm/Accounts``, ``oauth2/token``) or shell pattern; ``*`` for all.
* ``method``, ``division``: optional filters.
* ``after``: let this many matching requests through first (e.g. fail on page 3).
* ``count``: fire this many times, then retire (absent: forever).
* ``probability``: fire at random with this chance (seeded by the ``fault_seed`` knob).
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass
from typing import Any

BEFORE = frozenset({"latency", "timeout", "error", "drop", "html", "refuse"})
AFTER = frozenset({"drop_after", "malformed"})
KINDS = BEFORE | AFTER


@dataclass
class Rule:
    kind: str
    path: str = "*"
    method: str | None = None
    division: int | None = None
    after: int = 0
    count: int | None = None
    probability: float = 1.0
    status: int = 500
    ms: int = 0
    message: str = "Gegeven bestaat reeds."
    seen: int = 0
    fired: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Rule":
        unknown = set(raw) - {"kind", "path", "method", "division", "after", "count", "probability", "status", "ms",
                               "message"}
        if unknown or raw.get("kind") not in KINDS:
            raise ValueError(f"bad fault rule {raw!r} (kinds: {sorted(KINDS)})")
        return cls(**raw)

    def matches(self, method: str, path: str, division: int | None) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.division is not None and self.division != division:
            return False
        return self.path == "*" or path.startswith(self.path) or fnmatch.fnmatchcase(path, self.path)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Faults:
    def __init__(self, rules: list[dict[str, Any]], seed: int) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.rules = [Rule.from_dict(r) for r in rules]

    def replace(self, rules: list[dict[str, Any]], seed: int | None = None) -> None:
        parsed = [Rule.from_dict(r) for r in rules]
        with self.lock:
            self.rules = parsed
            if seed is not None:
                self.rng = random.Random(seed)

    def add(self, rule: dict[str, Any]) -> None:
        parsed = Rule.from_dict(rule)
        with self.lock:
            self.rules.append(parsed)

    def pick(self, phase: frozenset, method: str, path: str, division: int | None) -> list[Rule]:
        """The rules of one phase that fire for this request (each counts the request as seen)."""
        fired = []
        with self.lock:
            for rule in self.rules:
                if rule.kind not in phase or not rule.matches(method, path, division):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after or (rule.count is not None and rule.fired >= rule.count):
                    continue
                if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                fired.append(rule)
        return fired

    def report(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.as_dict() for r in self.rules]
