"""Exact Online OAuth2: the token endpoint client and the cross-process token protocol.

Exact's rules that shape this module (REFERENCE.md section 2):

* an access token lives 600 s; a refresh returns a new access token *and* a new refresh token and
  kills the old refresh token ("Old refresh token used.");
* a refresh within 570 s of the last issue is refused ("access_token not expired");
* a refresh token dies after 30 days unused; an authorization code after 3 minutes or one use.

The protocol (TokenManager), for any number of threads and processes sharing one store:

1. Use the access token from memory or the store while it has more than ``margin`` left. No lock.
2. Otherwise take the store lock and re-read: if somebody refreshed meanwhile, use theirs.
3. Else prove the answer can be stored (``reserve_write``: room reserved on disk, or a test write of
   the row), mark the store ("refresh started by X"), call the token endpoint once, save the new
   pair, and only then use it. A refresh is never retried blindly: after an unknown outcome the old
   refresh token may already be dead, and a second try would just prove it. A save that still fails
   is retried, then the pair is set aside in the store's recovery file and kept in memory; the
   next run takes it over (README, "When the token store is in trouble").
4. "Old refresh token used" means someone refreshed; under the lock that someone can only be
   outside the store (or a process that died before saving), so it is final: the user must log in
   again, and the message says so. "Too early" does not consume the refresh token: keep the stored
   access token for a while, or stop the run without asking for a login. Either way the store is
   left exactly as it was.

Crash recovery (documented for users): if a process dies after Exact answered a refresh but before
the new pair is saved (the window is one local file or database write), the new refresh token is
gone and the old one is dead at Exact; nothing can bring it back. The store itself stays whole (file:
temp file + rename; PostgreSQL: one transaction) and keeps the refresh mark, so the next run stops
with ReauthorizationRequired: "a token refresh started at <time> by <host> pid <n> never saved its
result ... Run `tap-exactonline auth`". After `tap-exactonline auth` every process works again. A
process killed *before* its request left (mark written, no answer yet) costs nothing: the next one
refreshes with the still-valid token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlencode

import requests

from exactonline_api.errors import (
    AuthorizationCodeRejected,
    ConfigError,
    ExactError,
    InvalidGrant,
    OAuthError,
    OldRefreshTokenUsed,
    ReauthorizationRequired,
    RefreshTokenExpired,
    RefreshTooEarly,
    TokenEndpointError,
)
from exactonline_api.redact import install as install_redaction
from exactonline_api.redact import redact, register_secret
from exactonline_api.tokens import TokenSet, TokenStore, TokenStoreError, crash_point, process_label
from exactonline_api.tokenset import newest

log = logging.getLogger("exactonline_api.oauth")

AUTH_PATH = "/api/oauth2/auth"
TOKEN_PATH = "/api/oauth2/token"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M:%SZ")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


class OAuthClient:
    """Talks to ``{base}/api/oauth2/*``. One request per call, never retried (see module doc)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 30,
    ) -> None:
        if not client_id:
            raise ConfigError("client_id is missing from the config: copy it from your app at apps.exactonline.com")
        if not client_secret:
            raise ConfigError(
                "client_secret is missing from the config: copy it from your app at apps.exactonline.com"
            )
        register_secret(client_secret, pin=True)
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        # A plain session of our own: the API session's auth and retry logic must not touch token calls.
        self._session = session or requests.Session()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"OAuthClient({self.base_url!r}, client_id={self.client_id[:8]!r}...)"

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    def authorization_url(self, redirect_uri: str, state: str, *, force_login: bool = False) -> str:
        query = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "state": state,
        }
        if force_login:
            query["force_login"] = "1"
        return f"{self.base_url}{AUTH_PATH}?{urlencode(query)}"

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """Trade an authorization code (valid 3 minutes, once) for the first token pair."""
        # Codes contain '!', which arrives URL-encoded as %21 when copied from the address bar.
        if "%" in code:
            code = unquote(code)
        register_secret(code)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }
        try:
            return self._token_request(form, grant="authorization code")
        except (InvalidGrant, AuthorizationCodeRejected, OldRefreshTokenUsed, RefreshTooEarly) as exc:
            hint = ""
            if "redirect" in (exc.description + exc.error).lower():
                hint = " Exact says the redirect URI is wrong."
            raise AuthorizationCodeRejected(
                f"Exact rejected the authorization code (HTTP {exc.status} {exc.error or 'error'}: "
                f"{exc.description or 'no description'}).{hint} A code works once and only for 3 minutes, and "
                f"redirect_uri ({redirect_uri}) must be exactly the one registered for the app; "
                "run the auth command again and finish within 3 minutes",
                status=exc.status,
                error=exc.error,
                description=exc.description,
            ) from None

    def refresh(self, refresh_token: str) -> TokenSet:
        """One refresh request. Raises a typed OAuthError; never retries."""
        register_secret(refresh_token)
        return self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, grant="refresh token"
        )

    # ----------------------------------------------------------------------------------------------
    def _token_request(self, form: dict, *, grant: str) -> TokenSet:
        body = dict(form, client_id=self.client_id, client_secret=self._client_secret)
        try:
            response = self._session.post(
                self.token_url,
                data=body,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise TokenEndpointError(
                f"could not connect to {self.token_url} within {self.timeout:.0f} s; check the network and retry"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            # Connection refused/unresolvable means nothing was sent; a broken connection may mean
            # Exact did process it.
            unknown = not _never_sent(exc)
            raise TokenEndpointError(
                f"token request to {self.token_url} failed ({_transport_reason(exc)})"
                + ("; Exact may have processed it" if unknown else ""),
                outcome_unknown=unknown,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TokenEndpointError(
                f"token request to {self.token_url} got no answer ({_transport_reason(exc)}); "
                "Exact may have processed it",
                outcome_unknown=True,
            ) from None
        received_at = time.time()
        if response.status_code == 200:
            return self._parse_tokens(response, received_at)
        raise self._classify(response, grant)

    def _parse_tokens(self, response: requests.Response, received_at: float) -> TokenSet:
        try:
            payload = response.json()
            access = payload["access_token"]
            refresh = payload["refresh_token"]
            # Exact sends expires_in as a JSON string ("600").
            expires_in = int(str(payload.get("expires_in", "600")).strip())
            if not access or not refresh or expires_in <= 0:
                raise ValueError("empty token")
        except (ValueError, KeyError, TypeError):
            raise TokenEndpointError(
                f"token endpoint {self.token_url} answered HTTP 200 without a usable token pair; "
                "the previous refresh token is probably consumed",
                status=200,
                outcome_unknown=True,
            ) from None
        register_secret(access)
        register_secret(refresh)
        # Measured from when the answer arrived, not when the request left: Exact's 570 s "too early"
        # clock starts at issue, which is after we sent; counting from receipt errs on the late side.
        return TokenSet(
            access_token=access,
            access_expires_at=received_at + expires_in,
            refresh_token=refresh,
            issued_at=received_at,
        )

    def _classify(self, response: requests.Response, grant: str) -> ExactError:
        status = response.status_code
        error, description = "", ""
        try:
            payload = response.json()
            if isinstance(payload, dict):
                error = str(payload.get("error") or "")
                description = str(payload.get("error_description") or "")
        except ValueError:
            pass
        reason = response.headers.get("Reason", "")
        # Non-JSON answers (HTML pages) still carry the reason in their text; only classify on it.
        body_text = "" if error or description else response.text[:500]
        text = f"{error} {description} {reason} {body_text}".lower()
        shown = f"HTTP {status} {error or 'error'}: {redact(description or reason or 'no description')}"
        kwargs: dict[str, Any] = {"status": status, "error": error, "description": description or reason}

        if "too many token requests" in text or "toomanytokenrequests" in text:
            # Exact's cap on token calls per app and user per day; the refresh token is untouched.
            return TokenEndpointError(
                f"Exact refused the token request: the daily limit of token requests for this app is used up "
                f"({shown}); try again after midnight UTC",
                **kwargs,
            )
        if "old refresh token" in text:
            return OldRefreshTokenUsed(f"Exact refused the refresh token as already used ({shown})", **kwargs)
        if "tooearly" in text or "not expired" in text:
            return RefreshTooEarly(f"Exact refused the refresh as too early ({shown})", **kwargs)
        if "expired" in text and grant == "refresh token":
            return RefreshTokenExpired(
                f"The Exact Online refresh token has expired ({shown}); refresh tokens die after 30 days "
                "without use",
                **kwargs,
            )
        if error == "invalid_grant":
            return InvalidGrant(f"Exact rejected the {grant} ({shown})", **kwargs)
        if status in (400, 401) and grant == "authorization code":
            return AuthorizationCodeRejected(f"Exact rejected the authorization code ({shown})", **kwargs)
        if error == "invalid_client":
            return ConfigError(f"Exact rejected the app credentials ({shown}): check client_id and client_secret")
        if status in (400, 401, 403):
            # Revoked tokens and other refusals: the refresh token will not work again.
            return InvalidGrant(f"Exact rejected the {grant} ({shown})", **kwargs)
        return TokenEndpointError(
            f"token endpoint answered {shown}",
            outcome_unknown=status >= 500 or status == 429,
            **kwargs,
        )


def _never_sent(exc: Exception) -> bool:
    text = repr(exc)
    return any(
        marker in text
        for marker in ("NewConnectionError", "NameResolutionError", "Connection refused", "Failed to resolve")
    )


def _transport_reason(exc: Exception) -> str:
    # The exception text can contain the URL; ours has no secrets, but keep only the class name and
    # a short cause to stay one line.
    cause = type(exc).__name__
    inner = getattr(exc, "args", None)
    if inner and "refused" in repr(inner).lower():
        cause += ": connection refused"
    elif inner and "timed out" in repr(inner).lower():
        cause += ": timed out"
    return cause


class TokenManager:
    """Hands out valid access tokens; refreshes them at most once per lifetime across all processes.

    ``margin_seconds``: a token counts as valid while more than the margin is left. Capped at
    ``max_margin_fraction`` of the token's lifetime, by default 5 %: Exact's 30-of-600-second refresh
    window, since a refresh any earlier is refused as too early. The cap also scales the margin for
    sandboxes with lifetimes of seconds; those may need a larger fraction to cover request latency.
    """

    def __init__(
        self,
        store: TokenStore,
        oauth: OAuthClient,
        *,
        seed_refresh_token: str | None = None,
        margin_seconds: float = 30,
        max_margin_fraction: float = 0.05,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        save_retry_delays: tuple[float, ...] = (0.2, 1.0),
    ) -> None:
        # Whoever handles tokens gets scrubbed logs, whether or not the entry point remembered to ask.
        install_redaction()
        self.store = store
        self.oauth = oauth
        self.seed_refresh_token = seed_refresh_token or None
        register_secret(self.seed_refresh_token)
        self.margin_seconds = margin_seconds
        self.max_margin_fraction = max_margin_fraction
        self.now = now
        self.sleep = sleep
        self.save_retry_delays = save_retry_delays
        self.refresh_count = 0
        self._cached: TokenSet | None = None
        # Tokens Exact issued that the store could not take: the only live pair until it is saved.
        self._unsaved: TokenSet | None = None
        # After a "too early" refusal: keep the current token without asking Exact again until then.
        self._hold_until = 0.0
        # Serialises this process's threads; the store lock serialises processes.
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"TokenManager({self.store.describe()!r}, refreshes={self.refresh_count})"

    # -- public -------------------------------------------------------------------------------------
    def access_token(self) -> str:
        with self._lock:
            if self._cached is not None and (self._usable(self._cached) or self.now() < self._hold_until):
                return self._cached.access_token
            stored = self.store.read()
            if stored is not None and self._usable(stored):
                self._cached = stored
                return stored.access_token
            return self._refresh(rejected=None).access_token

    def access_token_after_401(self, rejected: str) -> str:
        """A call with ``rejected`` got 401: return a different valid token, refreshing if needed."""
        with self._lock:
            for candidate in (self._cached, self.store.read()):
                if candidate is not None and candidate.access_token != rejected and self._usable(candidate):
                    self._cached = candidate
                    return candidate.access_token
            return self._refresh(rejected=rejected).access_token

    def check_can_save(self) -> None:
        """Before a login: prove the store can take new tokens, so no login is wasted on a broken store."""
        with self.store.locked(replacing=True):
            self.store.reserve_write(None)

    def save_login(self, obtain: Callable[[], TokenSet]) -> bool:
        """Get a login's first pair (``obtain`` exchanges the code) and save it like a refresh, never
        losing it. Replaces whatever the store held, a damaged file included. False: set aside only."""
        with self.store.locked(replacing=True):
            self.store.reserve_write(None)
            tokens = obtain()
            self._cached = tokens
            self._save(tokens)
        return self._unsaved is None

    def tokens(self) -> TokenSet | None:
        """The token set in use (for reports); no secrets are printed by its repr."""
        return self._cached or self.store.read()

    # -- internals ----------------------------------------------------------------------------------
    def _margin(self, tokens: TokenSet) -> float:
        return min(self.margin_seconds, self.max_margin_fraction * tokens.lifetime)

    def _usable(self, tokens: TokenSet) -> bool:
        return bool(tokens.access_token) and self.now() < tokens.access_expires_at - self._margin(tokens)

    def _refresh(self, rejected: str | None) -> TokenSet:
        result: TokenSet | None = None
        try:
            with self.store.locked() as current:
                if self._unsaved is not None and newest(current, self._unsaved) is current:
                    self._unsaved = None  # on disk again (taken over from the recovery file), or superseded
                result = self._refresh_locked(newest(current, self._unsaved), rejected)
        except TokenStoreError as exc:
            # Only letting go of the store failed (e.g. a PostgreSQL connection lost while it was
            # being written) after the new tokens were rescued: they are good, use them.
            if result is None or result is not self._unsaved:
                raise
            log.warning("releasing the token store failed after the new tokens were set aside: %s", exc)
        return result

    def _refresh_locked(self, current: TokenSet | None, rejected: str | None) -> TokenSet:
        store = self.store
        if current is None:
            if not self.seed_refresh_token:
                raise ReauthorizationRequired(f"No Exact Online tokens in {store.describe()} yet",
                                              first_login=True)
            log.info("token store %s is empty: seeding it from refresh_token in the config", store.describe())
            current = TokenSet("", 0.0, self.seed_refresh_token, 0.0)
        elif current.access_token != rejected and self._usable(current):
            # Somebody refreshed while we waited for the lock.
            self._cached = current
            return current
        elif rejected is not None and current.access_token == rejected and self._usable(current):
            log.warning(
                "Exact rejected an access token that should be valid until %s; refreshing it",
                _clock(current.access_expires_at),
            )

        if current.interrupted_refresh:
            log.warning(
                "a token refresh started at %s by %s never saved its result; trying the stored refresh token",
                _clock(current.refresh_started_at or 0),
                current.refresh_started_by or "an unknown process",
            )
        # Prove the answer can be stored before Exact rotates the refresh token.
        store.reserve_write(current)
        store.mark_refresh_started(process_label())
        crash_point("after_refresh_mark")
        try:
            new = self.oauth.refresh(current.refresh_token)
        except (OldRefreshTokenUsed, InvalidGrant, RefreshTooEarly) as exc:
            return self._after_refused_refresh(current, exc, rejected)
        except RefreshTokenExpired:
            store.clear_refresh_mark()
            raise
        except TokenEndpointError as exc:
            if not exc.outcome_unknown:
                store.clear_refresh_mark()
                raise
            # Leave the mark: the next process must know this refresh may have happened.
            raise TokenEndpointError(
                f"{exc}. The stored refresh token may now be used up; the next run will tell "
                f"(if it reports the token as already used, run `tap-exactonline auth`)",
                outcome_unknown=True,
                status=exc.status,
            ) from None
        except ConfigError:
            store.clear_refresh_mark()
            raise
        crash_point("after_token_response")
        # Save before use: from now on the old refresh token is dead and this pair is the only
        # way back in.
        self.refresh_count += 1
        self._cached = new
        self._save(new)
        log.info("refreshed access token (expires %s)", _clock(new.access_expires_at))
        return new

    def _save(self, new: TokenSet) -> None:
        """Write ``new`` to the store; if it will not go, never lose it (issue #15, README "Token store").

        Retry a few times, then set it aside in the store's recovery file (mode 0600), keep it in
        memory for the rest of the run, and say in one line where it is and how to restore it.
        """
        store = self.store
        failure: ExactError | None = None
        for delay in (0.0, *self.save_retry_delays):
            if delay:
                self.sleep(delay)
            try:
                store.write(new)
            except ExactError as exc:
                failure = exc
                continue
            self._unsaved = None
            return
        self._unsaved = new
        aside = store.rescue(new)
        if aside is None:
            log.error(
                "Exact issued new tokens but they could not be saved (%s) nor set aside; they live only in this "
                "process, which finishes its work with them. Fix the token store before the next run, which "
                "will otherwise need `tap-exactonline auth`", failure)
            return
        log.warning("Exact issued new tokens but they could not be saved (%s); %s", failure, aside)

    def _after_refused_refresh(self, current: TokenSet, exc: OAuthError, rejected: str | None) -> TokenSet:
        store = self.store
        # Under the lock nobody sharing this store can have refreshed, but re-reading costs nothing
        # and covers a store another tool rewrote.
        again = store.read()
        if again is not None and again.refresh_token != current.refresh_token and self._usable(again):
            self._cached = again
            return again
        store.clear_refresh_mark()

        if isinstance(exc, RefreshTooEarly) and not current.interrupted_refresh:
            # Exact does not consume a refresh token it refuses as too early, so this is no reason
            # to send anyone to log in. Usually our clock runs ahead of Exact's and the stored
            # access token is still good: keep using it and do not ask again for a while.
            if rejected is None and current.access_token:
                self._hold_until = self.now() + 2 * self._margin(current)
                self._cached = current
                log.warning(
                    "Exact refused the token refresh as too early (is this machine's clock ahead?); "
                    "using the stored access token until %s",
                    _clock(self._hold_until),
                )
                return current
            raise ExactError(
                "Exact refuses a new access token within 570 s of the last one, and "
                + ("rejected the current one" if rejected is not None else "the config's refresh_token is that new")
                + "; the refresh token is still valid: run again in 10 minutes"
            )
        what = {
            OldRefreshTokenUsed: "Exact says the stored refresh token was already used",
            RefreshTooEarly: "Exact says a newer token was issued in the last 10 minutes",
            InvalidGrant: "Exact no longer accepts the stored refresh token",
        }.get(type(exc), "Exact refused the stored refresh token")
        if current.interrupted_refresh:
            why = (
                f"a token refresh started at {_stamp(current.refresh_started_at or 0)} by "
                f"{current.refresh_started_by or 'another process'} never saved its result (the process was "
                f"killed or lost the answer), so the newest refresh token is lost"
            )
        elif current.access_token == "" and current.issued_at == 0:
            why = "the refresh_token in the config is not the newest one (Exact replaces it on every refresh)"
        else:
            why = (
                "a process that does not share this token store (another machine, a copy of the config, "
                "another tool) refreshed it; make every run use the same token_store"
            )
        raise ReauthorizationRequired(f"{what} ({exc.error or exc.status}): {why}. Left {store.describe()} unchanged")
