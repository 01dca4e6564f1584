"""Keep secrets out of logs, error messages and tracebacks.

Two layers, because either alone misses something:

* known values: every token, code and client secret this process handles is registered with
  :func:`register_secret` the moment it is seen, and replaced wherever it shows up, in any encoding
  a URL or form body would give it;
* shapes: ``access_token=...``, ``"refresh_token": "..."``, ``Bearer ...``, ``code=...`` are masked
  even when the value was never registered (a token from another process, a pasted URL).

:func:`install` hooks the logging record factory (so every logger, including singer-sdk's, urllib3's
and the root logger, is covered no matter which handlers are configured later) and ``sys.excepthook``.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from urllib.parse import quote, quote_plus

MASK = "***"

# Shortest value we register. Shorter strings would mask ordinary words; real tokens are 100+ chars
# and the sandbox's secret is 14.
_MIN_SECRET_LEN = 6

# A process that runs for weeks sees a new token pair every 10 minutes; the pattern only keeps the
# newest rotating values: 16 is the last 8 pairs, 80 minutes, and every older one is dead at Exact
# (an access token lives 10 minutes, a refresh token is spent by the refresh that replaces it).
# Pinned values (the client secret) stay for the life of the process.
_MAX_ROTATING = 16

_lock = threading.Lock()
_pinned: set[str] = set()
_rotating: dict[str, None] = {}  # insertion-ordered: oldest first
_pattern: re.Pattern[str] | None = None
_stale = False  # registered values changed since _pattern was compiled

_KEYS = r"(?:access_token|refresh_token|client_secret|code|id_token|password|token)"
# OAuth names are lower case; matching case-sensitively leaves Exact's PascalCase fields ("Code") alone.
_SHAPES = [
    # form bodies and query strings: refresh_token=abc&...
    re.compile(rf"(?<![A-Za-z0-9_])({_KEYS}=)[^&\s\"']+"),
    # JSON and Python reprs: "refresh_token": "abc" / 'refresh_token': 'abc'
    re.compile(rf"([\"']{_KEYS}[\"']\s*:\s*[\"'])[^\"']+"),
    # headers: Authorization: Bearer abc
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/!%=-]+"),
]


def _variants(value: str) -> set[str]:
    # Exact's codes and refresh tokens contain '!' and '+', which URLs and form bodies encode.
    return {value, quote(value, safe=""), quote_plus(value, safe=""), quote(value)}


def register_secret(value: str | None, *, pin: bool = False) -> None:
    """Remember a secret value so :func:`redact` masks it from now on (in this process).

    ``pin`` keeps it for good (credentials); otherwise it may be forgotten after 16 newer values.
    """
    global _stale
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _pinned or (not pin and value in _rotating):
            return
        if pin:
            _pinned.add(value)
            _rotating.pop(value, None)
        else:
            _rotating[value] = None
            while len(_rotating) > _MAX_ROTATING:
                del _rotating[next(iter(_rotating))]
        _stale = True


def _known_pattern() -> re.Pattern[str] | None:
    """The pattern of every registered value, compiled on first use after a change: a refresh
    registers two tokens, and compiling 100 or more long alternatives costs milliseconds that
    a process which logs nothing in between need not pay twice."""
    global _pattern, _stale
    if not _stale:
        return _pattern
    with _lock:
        if _stale:
            known = set()
            for secret in (*_pinned, *_rotating):
                known |= _variants(secret)
            # Longest first so a secret that contains another is masked whole.
            _pattern = re.compile("|".join(re.escape(s) for s in sorted(known, key=len, reverse=True))) \
                if known else None
            _stale = False
        return _pattern


def redact(text: object) -> str:
    """Return ``str(text)`` with every known secret and every secret-shaped value masked."""
    s = text if isinstance(text, str) else str(text)
    pattern = _known_pattern()
    if pattern is not None:
        s = pattern.sub(MASK, s)
    for shape in _SHAPES:
        s = shape.sub(lambda m: m.group(1) + MASK, s)
    return s


def redact_known(text: object) -> str:
    """Mask only the registered secret values, not the shapes.

    For files of business data (the target's reject file): a CSV column named ``code`` or ``token``
    is data there, and masking it by shape would hide which record was rejected.
    """
    s = text if isinstance(text, str) else str(text)
    pattern = _known_pattern()
    return pattern.sub(MASK, s) if pattern is not None else s


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites the record's message (and traceback text) with secrets masked.

    Attach it to a handler to cover everything that handler emits. :func:`install` is broader.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


_formatter = logging.Formatter()


def _scrub_record(record: logging.LogRecord) -> None:
    if getattr(record, "_exact_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not hide the record; show it raw instead
        message = f"{record.msg} {record.args}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set, so the traceback is masked too.
        record.exc_text = _formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._exact_redacted = True


_installed = False


def install() -> None:
    """Mask secrets in every log record of this process and in uncaught-exception tracebacks.

    Idempotent. Records are formatted when they are created instead of when they are emitted, which
    only matters for arguments that change between the two moments (none of ours).
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True

    previous_factory = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous_factory(*args, **kwargs)
        _scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)

    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        import traceback

        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(redact(text))

    # Only replace the default hook; a custom one (pytest, IDEs) knows what it is doing.
    if previous_hook is sys.__excepthook__:
        sys.excepthook = excepthook
