"""Typed errors shared by the tap and the target.

Every error's ``str()`` is one line that says what went wrong and what to do, and never contains a
token, an authorization code or the client secret: messages built from server answers are passed
through :func:`exactonline_api.redact.redact` before they land here.
"""

from __future__ import annotations

# The bare form; messages that ask for a login use exactonline_api.login_hint, which knows Meltano.
AUTH_COMMAND = "tap-exactonline auth --config <your config.json>"


def _one_line(text: str) -> str:
    # Exact's descriptions sometimes contain CR/LF ("VAT\r\ninvalid"); a log line must stay one line.
    return " ".join(str(text).split())


class ExactError(Exception):
    """Base class: ``str()`` is one clear line without secrets."""

    def __init__(self, message: str) -> None:
        # Imported lazily: redact imports nothing from here, but keep the dependency one-way and cheap.
        from exactonline_api.redact import redact

        self.message = redact(_one_line(message))
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(ExactError):
    """The configuration is missing or wrong; the user has to change it."""


class ReauthorizationRequired(ExactError):
    """The refresh token is expired, revoked or lost (or there never was one): a person has to log in."""

    def __init__(self, message: str, *, first_login: bool = False) -> None:
        from exactonline_api.login_hint import login_hint

        if "tap-exactonline auth" not in message and ":auth" not in message:
            message = f"{message.rstrip('. ')}. {login_hint(first=first_login)}"
        super().__init__(message)


class DailyBudgetExhausted(ExactError):
    """The daily API call budget (per division and app) is used up until the reset."""


class EndpointBlocked(ExactError):
    """Exact blocked this endpoint for the app (too many errors in an hour)."""


class ExactAPIError(ExactError):
    """An API call failed; ``status`` is the HTTP status (None: no answer), ``path`` the URL path (no query).

    ``refusal`` is True when Exact answered the request itself and said no (a 4xx, or a 500 carrying
    Exact's JSON error object with a message): the answer is final, sending it again gets the same
    answer. ``reason`` is Exact's ``Reason`` header (401/403), when there was one.
    """

    def __init__(self, status: int | None, message: str, path: str, *, refusal: bool = False,
                 reason: str = "") -> None:
        self.status = status
        self.path = path
        self.refusal = refusal
        self.reason = reason
        head = f"Exact API {path} answered HTTP {status}" if status else f"Exact API {path or 'call'}"
        super().__init__(f"{head}: {message}")
        # Keep the bare (cleaned) server message too; callers match on it.
        from exactonline_api.redact import redact

        self.message_text = redact(_one_line(message))

    @property
    def url_path(self) -> str:
        return self.path


class ErrorBudgetSpent(EndpointBlocked):
    """This app's share of Exact's hourly error limit on one endpoint and division is used up.

    Raised before a call, so nothing was sent; ``retry_at`` (epoch seconds) is when the oldest
    counted error leaves the hour.
    """

    def __init__(self, division: int, endpoint: str, retry_at: float) -> None:
        from datetime import datetime, timezone

        self.division = division
        self.endpoint = endpoint
        self.retry_at = retry_at
        hhmm = datetime.fromtimestamp(retry_at, tz=timezone.utc).strftime("%H:%M")
        self.reason = f"not sent: Exact would block {endpoint} for an hour; retry after {hhmm} UTC"
        super().__init__(f"{self.reason} (division {division})")


# --- OAuth token endpoint errors -------------------------------------------------------------------
# Raised by exactonline_api.oauth.OAuthClient. TokenManager decides which of them are final.


class OAuthError(ExactError):
    """The token endpoint refused a request. ``error``/``description`` are Exact's (cleaned) fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str = "",
        description: str = "",
    ) -> None:
        from exactonline_api.redact import redact

        self.status = status
        self.error = redact(_one_line(error))
        self.description = redact(_one_line(description))
        super().__init__(message)


class OldRefreshTokenUsed(OAuthError):
    """HTTP 401 unauthorized_client "Old refresh token used.": somebody already rotated this token."""


class InvalidGrant(OAuthError):
    """HTTP 400 invalid_grant (e.g. "invalid or empty chainId"): the token or code is no longer valid."""


class RefreshTooEarly(OAuthError):
    """Exact refuses refreshes within 570 s of the last issue ("access_token not expired")."""


class RefreshTokenExpired(OAuthError, ReauthorizationRequired):
    """The refresh token passed its 30-day life (or was revoked). Always final."""


class AuthorizationCodeRejected(OAuthError):
    """The token endpoint refused an authorization code (expired, reused or redirect URI mismatch)."""


class TokenEndpointError(OAuthError):
    """The token endpoint failed for another reason (5xx, network, unparseable answer).

    ``outcome_unknown`` is True when the request may have reached Exact: the refresh token may then
    already be rotated, so nobody may retry it blindly.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False, **kwargs) -> None:
        self.outcome_unknown = outcome_unknown
        super().__init__(message, **kwargs)
