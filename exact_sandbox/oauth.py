"""Exact's OAuth2: consent, single-use codes, rotating refresh tokens, the 570 s rule.

A *chain* is one consent: every refresh replaces its refresh token (the old one
answers 401 "Old refresh token used.") and its access token. Chains count their
refreshes so tests can assert "exactly one refresh per token lifetime".
"""

from __future__ import annotations

import base64
import fnmatch
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .knobs import Knobs
from .timeutil import Clock, exact_us_datetime
from .wire import Response, html_response, json_response, oauth_error

CHAIN_ID_ERROR = "Token is not allowed, because of invalid or empty chainId"
TOO_EARLY = "Rate limit exceeded: access_token not expired"


def _token(prefix_len: int, body_bytes: int) -> str:
    # Exact's codes and refresh tokens carry a "!" (percent-encoded in the redirect).
    return secrets.token_urlsafe(prefix_len)[:4] + "!IAAAA" + secrets.token_urlsafe(body_bytes)


@dataclass
class Chain:
    id: str
    client_id: str
    divisions: list[int]
    refresh_token: str
    refresh_issued_at: float
    last_issue: float
    created_at: float
    refreshes: int = 0
    rejected_too_early: int = 0
    old_token_reuses: int = 0
    revoked: bool = False
    current_division: int | None = None
    issues: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"chain": self.id, "client_id": self.client_id, "divisions": self.divisions,
                "refreshes": self.refreshes, "rejected_too_early": self.rejected_too_early,
                "old_token_reuses": self.old_token_reuses, "revoked": self.revoked,
                "created_at": self.created_at, "issues": list(self.issues)}


@dataclass
class Access:
    chain: Chain
    expires_at: float


class OAuth:
    def __init__(self, knobs: Knobs, clock: Clock) -> None:
        self.knobs = knobs
        self.clock = clock
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.chains: dict[str, Chain] = {}
        self.refresh_tokens: dict[str, tuple[Chain, bool]] = {}  # token -> (chain, still current)
        self.access: dict[str, Access] = {}
        self.token_calls: dict[tuple[str, int], int] = {}

    # -- consent ---------------------------------------------------------------

    def redirect_allowed(self, uri: str) -> bool:
        patterns = [p.strip() for p in str(self.knobs.redirect_uris).split(",") if p.strip()]
        return any(uri == p or fnmatch.fnmatchcase(uri, p) for p in patterns)

    def authorize(self, params: dict[str, str]) -> Response:
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if client_id != self.knobs.client_id:
            return html_response(400, f"<html><body><h1>Error</h1><p>The client_id '{_esc(client_id)}' "
                                      "is not a registered app.</p></body></html>")
        if not redirect_uri or not self.redirect_allowed(redirect_uri):
            return html_response(400, "<html><body><h1>Error</h1><p>The redirect URI "
                                      f"'{_esc(redirect_uri)}' does not match the redirect URI registered "
                                      "for this app.</p></body></html>")
        if params.get("response_type", "code") != "code":
            return html_response(400, "<html><body><h1>Error</h1><p>Unsupported response_type "
                                      f"'{_esc(params.get('response_type', ''))}'.</p></body></html>")
        try:
            divisions = self._granted(params.get("divisions"))
        except ValueError as exc:
            return html_response(400, f"<html><body><h1>Error</h1><p>{_esc(str(exc))}</p></body></html>")
        code = _token(6, 120)
        with self.lock:
            self.codes[code] = {"client_id": client_id, "redirect_uri": redirect_uri, "divisions": divisions,
                                "expires_at": self.clock.now() + self.knobs.code_lifetime, "used": False}
        query = {"code": code}
        if "state" in params:
            query["state"] = params["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return Response(302, b"", None, [("Location", redirect_uri + separator + urlencode(query))])

    def _granted(self, spec: str | None) -> list[int]:
        known = self.knobs.division_codes
        if not spec:
            return list(known)
        wanted = [int(part) for part in spec.split(",") if part.strip()]
        unknown = [d for d in wanted if d not in known]
        if unknown:
            raise ValueError(f"Unknown divisions {unknown}.")
        return wanted

    # -- token endpoint --------------------------------------------------------

    def token(self, form: dict[str, str], headers: dict[str, str]) -> Response:
        content_type = headers.get("content-type", "")
        if "application/x-www-form-urlencoded" not in content_type:
            return oauth_error(400, "invalid_request")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if self.knobs.allow_basic_client_auth and auth.lower().startswith("basic ") and not client_id:
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return oauth_error(400, "invalid_client")
        if client_id != self.knobs.client_id or secret != self.knobs.client_secret:
            return oauth_error(400, "invalid_client")
        now = self.clock.now()
        with self.lock:
            if not self._count_call(client_id, now):
                return oauth_error(400, "access_denied", "Rate limit exceeded: too many token requests today",
                                   "TooManyTokenRequests: Rate limit exceeded")
            grant = form.get("grant_type")
            if grant == "authorization_code":
                return self._exchange(form, client_id, now)
            if grant == "refresh_token":
                return self._refresh(form.get("refresh_token", ""), client_id, now)
            return oauth_error(400, "unsupported_grant_type")

    def _count_call(self, client_id: str, now: float) -> bool:
        limit = int(self.knobs.token_calls_per_day)
        day = int(now // 86400)
        count = self.token_calls.get((client_id, day), 0) + 1
        self.token_calls[(client_id, day)] = count
        return not limit or count <= limit

    def _exchange(self, form: dict[str, str], client_id: str, now: float) -> Response:
        grant = self.codes.get(form.get("code", ""))
        if grant is None or grant["used"] or grant["expires_at"] < now or grant["client_id"] != client_id:
            return oauth_error(400, "invalid_grant", CHAIN_ID_ERROR, "Unknown: " + CHAIN_ID_ERROR)
        grant["used"] = True  # single use, even when the rest of the request is wrong
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return oauth_error(400, "invalid_grant", "The redirect_uri does not match the authorization request.")
        chain = self._new_chain(client_id, grant["divisions"], now, issued_at=now)
        return self._issue(chain, now)

    def _refresh(self, token: str, client_id: str, now: float) -> Response:
        found = self.refresh_tokens.get(token)
        if found is None:
            return oauth_error(400, "invalid_grant", CHAIN_ID_ERROR, "Unknown: " + CHAIN_ID_ERROR)
        chain, current = found
        if chain.client_id != client_id:
            return oauth_error(400, "invalid_grant", CHAIN_ID_ERROR, "Unknown: " + CHAIN_ID_ERROR)
        if not current:
            chain.old_token_reuses += 1
            return oauth_error(401, "unauthorized_client", "Old refresh token used.")
        if chain.revoked:
            return oauth_error(400, "invalid_grant", "The refresh token has been revoked.")
        expires_at = chain.refresh_issued_at + self.knobs.refresh_token_lifetime
        if now >= expires_at:
            return oauth_error(400, "invalid_request",
                               f"The refresh token expired at {exact_us_datetime(expires_at)} "
                               f"and it is now {exact_us_datetime(now)}.")
        if now - chain.last_issue < self.knobs.refresh_too_early_seconds:
            chain.rejected_too_early += 1  # the refresh token stays valid
            return oauth_error(400, "access_denied", TOO_EARLY, "TooEarlyToRefreshTokens: " + TOO_EARLY)
        chain.refreshes += 1
        return self._issue(chain, now)

    def _new_chain(self, client_id: str, divisions: list[int], now: float, issued_at: float) -> Chain:
        chain = Chain(id=secrets.token_hex(8), client_id=client_id, divisions=list(divisions), refresh_token="",
                      refresh_issued_at=now, last_issue=issued_at, created_at=now)
        self.chains[chain.id] = chain
        return chain

    def _rotate(self, chain: Chain, now: float) -> str:
        if chain.refresh_token:
            self.refresh_tokens[chain.refresh_token] = (chain, False)
        chain.refresh_token = _token(6, 180)
        chain.refresh_issued_at = now
        self.refresh_tokens[chain.refresh_token] = (chain, True)
        return chain.refresh_token

    def _issue(self, chain: Chain, now: float) -> Response:
        if self.knobs.revoke_old_access_on_refresh:
            for token in [t for t, a in self.access.items() if a.chain is chain]:
                del self.access[token]
        access_token = "AAEAA" + secrets.token_urlsafe(480)  # Exact's are 600-650+ characters
        lifetime = int(self.knobs.access_token_lifetime)
        self.access[access_token] = Access(chain, now + lifetime)
        chain.last_issue = now
        chain.issues.append(now)
        refresh_token = self._rotate(chain, now)
        return json_response(200, {"access_token": access_token, "token_type": "bearer",
                                   "expires_in": str(lifetime), "refresh_token": refresh_token},
                             [("Cache-Control", "no-store")])

    # -- for the API and the admin endpoint --------------------------------------

    def chain_for(self, headers: dict[str, str]) -> Chain | None:
        """The chain behind ``Authorization: Bearer ...``, if the token is known and alive."""
        auth = headers.get("authorization", "")
        return self.check_access(auth[7:].strip()) if auth[:7].lower() == "bearer " else None

    def check_access(self, token: str) -> Chain | None:
        access = self.access.get(token)
        if access is None or access.chain.revoked:
            return None
        if access.expires_at <= self.clock.now():
            return None
        return access.chain

    def mint_refresh_token(self, divisions: list[int] | None = None, issued_seconds_ago: float | None = None,
                           client_id: str | None = None) -> dict[str, Any]:
        """A chain as if consent happened earlier (by default long enough ago to refresh at once)."""
        now = self.clock.now()
        ago = 10 * 365 * 86400 if issued_seconds_ago is None else float(issued_seconds_ago)
        with self.lock:
            chain = self._new_chain(client_id or self.knobs.client_id,
                                    divisions or self.knobs.division_codes, now, issued_at=now - ago)
            token = self._rotate(chain, now)
        return {"refresh_token": token, "chain": chain.id}

    def revoke(self, refresh_token: str | None = None, chain_id: str | None = None) -> int:
        with self.lock:
            targets = [c for c in self.chains.values()
                       if (chain_id is None and refresh_token is None)
                       or c.id == chain_id
                       or (refresh_token and self.refresh_tokens.get(refresh_token, (None,))[0] is c)]
            for chain in targets:
                chain.revoked = True
            return len(targets)

    def expire_access_tokens(self) -> int:
        with self.lock:
            count = len(self.access)
            for access in self.access.values():
                access.expires_at = self.clock.now() - 1
            return count

    def report(self) -> list[dict[str, Any]]:
        with self.lock:
            return [chain.report() for chain in self.chains.values()]


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
