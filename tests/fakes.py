"""Fakes for unit tests of the HTTP layer: a clock that only moves when slept on, a token
source, and a transport that answers from a script (no socket, no sandbox)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter


class FakeClock:
    """``now()`` for the limiter; ``sleep()`` records the wait and moves time on by it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now_value = now
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.now_value

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_value += seconds


@dataclass
class FakeTokens:
    tokens: list[str] = field(default_factory=lambda: ["token-1", "token-2", "token-3"])
    after_401: list[str] = field(default_factory=list)

    def access_token(self) -> str:
        return self.tokens[0]

    def access_token_after_401(self, rejected: str) -> str:
        self.after_401.append(rejected)
        return self.tokens[len(self.after_401)]


Answer = tuple[int, bytes, dict[str, str]] | Exception


class ScriptedTransport(HTTPAdapter):
    """Answers the requests in order from ``script``; an Exception entry is raised instead.

    Mounted on a session, it replaces the network below requests, so everything above
    (the session's retry policy, the limiter, body reading) runs as in production.
    """

    def __init__(self, *script: Answer) -> None:
        super().__init__()
        self.script = list(script)
        self.seen: list[tuple[str, str, str]] = []  # (method, url, Authorization)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.seen.append((request.method or "", request.url or "", request.headers.get("Authorization", "")))
        if not self.script:
            raise AssertionError(f"unexpected extra call: {request.method} {request.url}")
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=status,
                                   preload_content=False, decode_content=False)
        return self.build_response(request, raw)


def ok(body: bytes = b'{"d": {"results": []}}', **headers: str) -> Answer:
    return 200, body, {"Content-Type": "application/json", **headers}


def status(code: int, body: bytes = b"", **headers: str) -> Answer:
    return code, body, {"Content-Type": "application/json", **headers}


def exact_error(code: int, message: str) -> Answer:
    body = ('{"error": {"code": "", "message": {"lang": "", "value": "%s"}}}' % message).encode()
    return status(code, body)


def mounted(session: requests.Session, transport: ScriptedTransport) -> Callable[[], int]:
    """Mount ``transport`` for every URL; returns a function counting the calls it saw."""
    session.mount("https://", transport)
    session.mount("http://", transport)
    return lambda: len(transport.seen)


class SandboxTime(FakeClock):
    """The client's clock and sleep, running on the sandbox's frozen clock.

    Every wait the tap or the target makes (throttle, 429, retry backoff) moves Exact's
    clock by exactly as much, at once: rate-limit windows behave as at Exact, the test
    takes no wall-clock time, and a loaded machine cannot shift a call into another window.
    """

    def __init__(self, handle: Any, at: float = 1_800_000_000.0) -> None:
        super().__init__(handle.freeze(at))
        self.handle = handle

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.handle.advance(seconds)


def client_time_from(monkeypatch: Any, source: Any) -> None:
    """Make every RateLimiter and ExactSession built from now on use ``source``'s clock and
    sleep, through their constructor defaults: the tap and the target build their own."""
    from exactonline_api.http import ExactSession
    from exactonline_api.limits import RateLimiter

    for init in (RateLimiter.__init__, ExactSession.__init__):
        defaults = init.__kwdefaults__
        if "clock" in defaults:
            monkeypatch.setitem(defaults, "clock", source.now)
        monkeypatch.setitem(defaults, "sleep", source.sleep)
