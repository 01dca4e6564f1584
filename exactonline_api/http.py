"""One HTTP session for every call to Exact, used by the tap and the target.

It adds the bearer token, a timeout, the rate limiter and the retry policy:

* Answers are classified once (answers.py): a refusal (4xx, or a 500 with
  Exact's JSON error message) raises :class:`ExactAPIError` with ``refusal``
  set, for GETs and writes alike, and is never retried (Exact blocks an
  endpoint for an hour after 10 answers 400/401/403/404), except one retry of
  a 401 with a fresh access token.
* GET is retried on unknown outcomes (5xx without Exact's message, timeouts,
  dropped connections, malformed bodies), with capped exponential backoff and
  full jitter.
* A write whose outcome is unknown raises :class:`WriteOutcomeUnknown` instead
  of being retried: only the caller can look up whether it took effect.
* With an :class:`ErrorBudget`, every counted error is noted in it, and a call
  on a (division, endpoint) whose budget is spent is not made
  (:class:`ErrorBudgetSpent`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

import backoff
import msgspec
import requests
import urllib3

from exactonline_api.answers import exact_message, reason_advice
from exactonline_api.budget import ErrorBudget
from exactonline_api.errors import EndpointBlocked, ExactAPIError, ExactError
from exactonline_api.limits import RateLimiter
from exactonline_api.odata import next_link

LOG = logging.getLogger("exactonline_api.http")

_DIVISION_IN_URL = re.compile(r"/api/v1/(?:beta/)?(\d+)/([^?(]+)")
# Tests shorten these; a real run keeps Exact-friendly pauses.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
_BLOCKED_HINTS = ("too many errors", "blocked")
TRANSIENT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class AccessTokens(Protocol):
    def access_token(self) -> str: ...

    def access_token_after_401(self, rejected: str) -> str: ...


class WriteOutcomeUnknown(ExactError):
    """A POST/PUT/DELETE got no usable answer; it may or may not have taken effect."""


Decode = Callable[[bytes], Any]


def origin(url: str) -> str:
    """``https://start.exactonline.nl/api/v1/...`` -> ``https://start.exactonline.nl``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def paginate(get_page: Callable[[str], Any], url: str) -> Iterator[Any]:
    """Every page of a collection, following Exact's ``__next`` links verbatim.

    The one pagination loop of the project: the tap's streams and lookups, the
    target's lookups and the auth command all page through here. ``get_page``
    turns a URL into a decoded envelope (a dict, or a typed Struct with ``d.next``).
    A next link to another host than the first URL's is refused: the bearer token
    goes with every page and must never reach a host we did not choose.
    """
    home = origin(url)
    link: str | None = url
    while link:
        payload = get_page(link)
        yield payload
        link = next_link(payload)
        if link and origin(link) != home:
            raise ExactError(f"Exact returned a next-page link to another host ({link.split('?')[0]})")


def division_and_endpoint(url: str) -> tuple[int | None, str]:
    """``.../api/v1/123/sync/CRM/Accounts?$x`` -> ``(123, "sync/CRM/Accounts")``."""
    match = _DIVISION_IN_URL.search(url)
    if not match:
        path = url.split("/api/v1/", 1)[-1].split("?", 1)[0]
        return None, path
    return int(match.group(1)), match.group(2)


def _read_body(response: requests.Response) -> None:
    """The whole body in one read.

    requests would join it from 10 kB chunks, which costs as much CPU as
    converting the records of a 2 MB page of 1,000 rows.
    """
    try:
        response._content = response.raw.read(decode_content=True)
    except urllib3.exceptions.HTTPError as exc:  # cut off, timed out or undecodable mid-body
        response.close()
        raise requests.exceptions.ConnectionError(f"body not fully read: {type(exc).__name__}") from None
    response._content_consumed = True  # type: ignore[attr-defined]
    response.raw.release_conn()


class ExactSession(requests.Session):
    """A keep-alive session that speaks Exact's rules; see the module docstring."""

    def __init__(
        self,
        tokens: AccessTokens,
        *,
        limiter: RateLimiter | None = None,
        timeout: tuple[float, float] = (10.0, 120.0),
        max_retries: int = 6,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        max_429_waits: int = 20,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "tap-exactonline",
        error_budget: ErrorBudget | None = None,
        pool_size: int = 10,
    ) -> None:
        super().__init__()
        # One keep-alive connection per thread that reads a division at the same time.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(pool_size, 1))
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.tokens = tokens
        self.limiter = limiter or RateLimiter(sleep=sleep)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = BACKOFF_BASE_SECONDS if backoff_base is None else backoff_base
        self.backoff_cap = BACKOFF_CAP_SECONDS if backoff_cap is None else backoff_cap
        self.max_429_waits = max_429_waits
        self.sleep = sleep
        self.error_budget = error_budget
        self.headers.update({"Accept": "application/json", "User-Agent": user_agent})

    # requests calls send() for every request (get, post, put, ...).
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        return self._exchange(request, kwargs, None)[0]

    def get_page(self, url: str, decode: Decode | None = None) -> Any:
        """GET one page and return it decoded: by ``decode`` (a typed decoder, e.g.
        msgspec into the selected fields) when the body fits it, else as generic JSON."""
        request = self.prepare_request(requests.Request("GET", url))
        return self._exchange(request, {}, decode)[1]

    def get_json(self, url: str) -> Any:
        return self.get_page(url)

    def paginate(self, url: str, decode: Decode | None = None) -> Iterator[Any]:
        """Every page behind ``url`` (see :func:`paginate`)."""
        return paginate(lambda link: self.get_page(link, decode), url)

    def _exchange(  # noqa: C901
        self, request: requests.PreparedRequest, kwargs: dict[str, Any], decode: Decode | None,
    ) -> tuple[requests.Response, Any]:
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        division, endpoint = division_and_endpoint(request.url or "")
        method = (request.method or "GET").upper()
        is_read = method in ("GET", "HEAD")
        if is_read:
            kwargs["stream"] = True  # the body is read by _read_body, in one piece
        delays = backoff.expo(base=2, factor=self.backoff_base, max_value=self.backoff_cap)
        next(delays)  # the generator's first value is a priming None
        token = self.tokens.access_token()
        refreshed = False
        failures = 0
        waits_429 = 0
        while True:
            if division is not None:
                if self.error_budget is not None:
                    self.error_budget.check(division, endpoint)
                self.limiter.before_call(division)
            request.headers["Authorization"] = f"Bearer {token}"
            try:
                response = super().send(request, **kwargs)
                if is_read:
                    _read_body(response)
            except TRANSIENT_ERRORS as exc:
                if division is not None:
                    self.limiter.budget(division).calls += 1
                problem = f"{type(exc).__name__} on {method} {endpoint}"
                if not is_read:
                    raise WriteOutcomeUnknown(f"{problem}: the write may or may not have been applied") from None
                failures = self._retry_or_raise(failures, delays, division, problem)
                continue
            status = response.status_code
            if division is not None:
                self.limiter.after_call(division, response.headers, status)
                if self.error_budget is not None:
                    self.error_budget.note(division, endpoint, status)

            if status == 401 and not refreshed:
                refreshed = True
                token = self.tokens.access_token_after_401(token)
                continue
            if status == 429:
                waits_429 += 1
                if waits_429 > self.max_429_waits:
                    raise ExactAPIError(429, f"still rate limited after {self.max_429_waits} waits", endpoint)
                self.limiter.after_429(division, response.headers)
                continue
            if status >= 500:
                message = exact_message(response.content)
                if message is not None:  # Exact's own refusal (a business rule): final
                    raise ExactAPIError(status, message, endpoint, refusal=True)
                problem = f"HTTP {status} on {method} {endpoint}"
                if not is_read:
                    raise WriteOutcomeUnknown(f"{problem}: the write may or may not have been applied")
                failures = self._retry_or_raise(failures, delays, division, problem)
                continue
            if status >= 400:
                raise self._client_error(response, division, endpoint, method)
            payload = None
            if is_read and status == 200:
                payload = self._json_or_none(response, decode)
                if payload is None:
                    failures = self._retry_or_raise(
                        failures, delays, division, f"malformed body on GET {endpoint}")
                    continue
            return response, payload

    def _retry_or_raise(self, failures: int, delays, division: int | None, problem: str) -> int:
        failures += 1
        if failures > self.max_retries:
            raise ExactAPIError(None, f"no usable answer ({problem}); gave up after {self.max_retries} retries", "")
        delay = backoff.full_jitter(next(delays))
        if division is not None:
            self.limiter.budget(division).retries += 1
        LOG.warning("%s; retry %d/%d in %.1f s", problem, failures, self.max_retries, delay)
        self.sleep(delay)
        return failures

    @staticmethod
    def _json_or_none(response: requests.Response, decode: Decode | None = None) -> Any:
        """The decoded body, or None when it is no JSON object (a page to read again).

        ``decode`` is a caller's typed decoder; a body that does not fit its types is
        decoded the generic way instead.
        """
        if decode is not None:
            try:
                return decode(response.content)
            except msgspec.ValidationError:
                pass
            except msgspec.DecodeError:
                return None
        try:
            payload = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            return None
        # Exact answers maintenance pages with HTTP 200; a real answer is an object.
        return payload if isinstance(payload, dict) else None

    def _client_error(self, response: requests.Response, division: int | None, endpoint: str,
                      method: str) -> ExactError:
        status = response.status_code
        message = exact_message(response.content) or response.reason or "no message"
        reason = response.headers.get("Reason", "")
        # Exact's block message; a Reason header (BlockedUser, DivisionBlocked) is about something else.
        if not reason and any(hint in message.lower() for hint in _BLOCKED_HINTS):
            if division is not None and self.error_budget is not None:
                self.error_budget.spend_all(division, endpoint)
            return EndpointBlocked(
                f"{endpoint}: Exact blocked this endpoint after too many errors this hour ({message}); "
                "it unblocks after an hour without errors"
            )
        text = message
        if status == 401:
            text = f"Exact refused the access token even after a refresh ({message})"
        if status in (401, 403) and (reason or "scope violated" in message.lower()):
            text = reason_advice(reason, message, division=division, endpoint=endpoint, method=method)
        return ExactAPIError(status, text, endpoint, refusal=True, reason=reason)
