"""Authentication for the tap: the `auth` command, the connection test and a bearer authenticator.

``tap-exactonline auth --config config.json`` replaces the manual Postman dance:

1. prints Exact's consent URL with a random ``state``;
2. takes the redirect back, either on a local callback server (redirect URI on http://localhost or
   http://127.0.0.1) or, because Exact requires public HTTPS redirect URIs, by the user pasting the
   full URL the browser ended up on (works headless, over SSH, in a container);
3. checks ``state``, exchanges the code at once (codes live 3 minutes, one use), writes the token
   store, and lists the divisions the user granted.

Config keys read here: client_id, client_secret, redirect_uri, base_url or country (default nl),
token_store.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import queue
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests
import requests.auth

from exactonline_api import odata, redact
from exactonline_api.connect import base_url_of, token_manager_from_config
from exactonline_api.errors import ConfigError, ExactAPIError, ExactError
from exactonline_api.http import paginate
from exactonline_api.oauth import TokenManager
from exactonline_api.odata import query_string

ENV_PREFIX = "TAP_EXACTONLINE_"
# Time for the person to log in; the code's 3-minute life only starts at the redirect.
DEFAULT_WAIT_SECONDS = 600
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


# --------------------------------------------------------------------------------------------------
# Building blocks the tap and target share
# --------------------------------------------------------------------------------------------------


class ExactBearerAuth(requests.auth.AuthBase):
    """A requests/singer-sdk authenticator that takes the bearer token from a TokenManager.

    With ``retry_on_401`` a 401 answer is retried once with a fresh token (the request was refused,
    not executed, so this is safe for writes too). ExactSession does this itself; only plain
    ``requests.Session`` users need it.
    """

    def __init__(self, token_manager: TokenManager, *, retry_on_401: bool = True) -> None:
        self.token_manager = token_manager
        self.retry_on_401 = retry_on_401

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token_manager.access_token()}"
        # singer-sdk calls the authenticator twice per request (prepare and send): hook once.
        if self.retry_on_401 and self._on_response not in request.hooks["response"]:
            request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, "_exact_401_retried", False):
            return response
        if request.body is not None and not isinstance(request.body, (bytes, str)):
            return response  # a streamed body is consumed; cannot send it again
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = self.token_manager.access_token_after_401(sent)
        response.content  # noqa: B018 - drain so the connection can be reused
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {token}"
        retry._exact_401_retried = True  # type: ignore[attr-defined]
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExactBearerAuth) and other.token_manager is self.token_manager

    __hash__ = object.__hash__


# --------------------------------------------------------------------------------------------------
# Small API helper (only current/Me and system/Divisions are needed here)
# --------------------------------------------------------------------------------------------------


class _Api:
    def __init__(self, session_or_base_url: requests.Session | str, token_manager: TokenManager,
                 base_url: str | None) -> None:
        self.tm = token_manager
        if isinstance(session_or_base_url, str):
            self.session: requests.Session = requests.Session()
            self.base_url = session_or_base_url.rstrip("/")
            self.auth: requests.auth.AuthBase | None = ExactBearerAuth(token_manager)
        else:
            self.session = session_or_base_url
            found = base_url or getattr(session_or_base_url, "base_url", None) or token_manager.oauth.base_url
            self.base_url = str(found).rstrip("/")
            # A session that brings its own token handling (ExactSession) must not get a second one.
            self.auth = None if hasattr(session_or_base_url, "tokens") else ExactBearerAuth(token_manager)

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[Any, requests.Response]:
        url = path if path.startswith("http") else f"{self.base_url}/api/v1/{path}"
        shown = urlsplit(url).path
        if params:
            # Exact's OData wants $ and commas literal and spaces as %20, as the streams send them.
            url += "?" + query_string(params)
        try:
            response = self.session.get(url, auth=self.auth, timeout=30, headers={"Accept": "application/json"})
        except requests.exceptions.RequestException as exc:
            raise ExactAPIError(None, f"no answer ({type(exc).__name__})", shown) from None
        if response.status_code >= 400:
            raise ExactAPIError(response.status_code, _error_text(response), shown)
        try:
            payload = response.json()
        except ValueError:
            raise ExactAPIError(response.status_code, "answer is not JSON", shown) from None
        return payload, response


def _error_text(response: requests.Response) -> str:
    try:
        return odata.error_message(response.json()) or response.reason or "no message"
    except ValueError:
        return response.reason or "no message"


def _results(payload: Any, path: str) -> list[dict]:
    try:
        return odata.results(payload)
    except ValueError as exc:
        raise ExactAPIError(200, str(exc), path) from None


def current_user(api: _Api) -> dict:
    payload, _ = api.get("current/Me", {"$select": "CurrentDivision,FullName,UserName"})
    rows = _results(payload, "/api/v1/current/Me")
    if not rows:
        raise ExactAPIError(200, "current/Me returned no user", "/api/v1/current/Me")
    return rows[0]


def list_divisions(api: _Api, current_division: int) -> list[dict]:
    url = f"{api.base_url}/api/v1/{current_division}/system/Divisions?" + query_string({"$select": "Code,Description"})
    rows: list[dict] = []
    for payload in paginate(lambda link: api.get(link)[0], url):
        rows.extend(_results(payload, "/api/v1/system/Divisions"))
    return rows


# --------------------------------------------------------------------------------------------------
# Connection test (`tap-exactonline --test`)
# --------------------------------------------------------------------------------------------------


def connection_report(
    session_or_base_url: requests.Session | str,
    token_manager: TokenManager | str | None = None,
    *,
    base_url: str | None = None,
    check_budget: bool = True,
) -> str:
    """Check that the stored tokens work and say who we are; never syncs anything.

    HTTP calls: ``GET current/Me`` (not counted in Exact's daily limit), then, with
    ``check_budget``, ``GET {division}/system/Divisions?$select=Code&$top=1`` because only
    division URLs carry the X-RateLimit headers: that one costs 1 call of the daily budget.
    Plus one token refresh if the stored access token is about to expire.
    Raises ExactError (ReauthorizationRequired when a login is needed).

    Called as ``connection_report(base_url, token_manager)``, ``connection_report(session,
    token_manager)`` or, with an ExactSession that carries its TokenManager, ``connection_report(session,
    base_url)``.
    """
    if isinstance(token_manager, str):
        base_url, token_manager = token_manager, None
    if token_manager is None:
        token_manager = getattr(session_or_base_url, "tokens", None)
        if token_manager is None:
            raise TypeError("connection_report needs a TokenManager unless the session carries one (.tokens)")
    api = _Api(session_or_base_url, token_manager, base_url)
    me = current_user(api)
    division = me.get("CurrentDivision")
    who = me.get("FullName") or me.get("UserName") or "unknown user"
    if me.get("UserName") and me.get("FullName"):
        who = f"{me['FullName']} ({me['UserName']})"
    lines = [f"Connected to {api.base_url} as {who}.", f"Current division: {division}."]
    if check_budget and division:
        _, response = api.get(f"{division}/system/Divisions", {"$select": "Code", "$top": "1"})
        lines.append(f"Daily API budget: {_budget_text(response.headers)}.")
    else:
        lines.append("Daily API budget: unknown until the first division call.")
    return "\n".join(lines)


def _budget_text(headers: Mapping[str, str]) -> str:
    remaining = headers.get("X-RateLimit-Remaining")
    limit = headers.get("X-RateLimit-Limit")
    reset = headers.get("X-RateLimit-Reset")
    if remaining is None:
        return "unknown (Exact sent no X-RateLimit headers)"
    text = f"{remaining} of {limit} calls left" if limit else f"{remaining} calls left"
    try:
        reset_at = datetime.fromtimestamp(int(reset) / 1000, timezone.utc)  # type: ignore[arg-type]  # None: caught
        text += f", resets {reset_at:%Y-%m-%d %H:%M}Z"
    except (TypeError, ValueError, OverflowError):
        pass
    return text


# --------------------------------------------------------------------------------------------------
# The auth command
# --------------------------------------------------------------------------------------------------


class _CallbackServer:
    """Waits for the browser's redirect on a local redirect URI; answers with a plain thank-you page."""

    def __init__(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        host = parts.hostname or "127.0.0.1"
        bind = "127.0.0.1" if host == "localhost" else host
        self.path = parts.path or "/"
        self.received: queue.Queue[str] = queue.Queue()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                target = urlsplit(self.path)
                query = parse_qs(target.query)
                if target.path != outer.path or not ({"code", "error"} & query.keys()):
                    self.send_error(404)
                    return
                body = b"<html><body><p>Exact Online authorization received. You can close this tab.</p></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.received.put(urlunsplit(("http", self.headers.get("Host", ""), target.path, target.query, "")))

            def log_message(self, *args: Any) -> None:
                pass  # the default logs the request line, which holds the code

        family = socket.AF_INET6 if ":" in bind else socket.AF_INET

        class Server(http.server.ThreadingHTTPServer):
            address_family = family

        try:
            self.server = Server((bind, parts.port or 80), Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{parts.port or 80} for the redirect ({exc.strerror}); "
                "free the port or use --paste"
            ) from None
        self.port = self.server.server_address[1]
        # Port 0 in the configured URI means "any free port" (the registered URI must allow it).
        shown_host = f"[{host}]" if ":" in host else host
        self.redirect_uri = urlunsplit((parts.scheme, f"{shown_host}:{self.port}", self.path, parts.query, ""))
        self.thread = threading.Thread(target=self.server.serve_forever, name="exact-auth-callback", daemon=True)
        self.thread.start()

    def wait(self, timeout: float) -> str:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise ExactError(
                f"no redirect arrived at {self.redirect_uri} within {timeout:.0f} s; run the auth command again "
                "(or use --paste if the browser runs on another machine)"
            ) from None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def is_local_redirect(redirect_uri: str) -> bool:
    parts = urlsplit(redirect_uri)
    return parts.scheme == "http" and (parts.hostname or "") in _LOCAL_HOSTS


def parse_redirect(url: str, expected_state: str) -> str:
    """The authorization code from the redirected URL, after checking it belongs to this run."""
    url = url.strip().strip("'\"<>")
    parts = urlsplit(url)
    query = parse_qs(parts.query or (url[1:] if url.startswith("?") else ""))
    if "error" in query:
        error = query["error"][0]
        description = query.get("error_description", [""])[0]
        if error == "access_denied":
            raise ExactError("the Exact Online login was cancelled or access was denied; run the auth command again")
        raise ExactError(f"Exact answered the login with error {error}: {description or 'no description'}")
    if "code" not in query:
        raise ExactError(
            "that is not the redirected URL: paste the complete address from the browser's address bar "
            "after logging in (it contains ?code=...&state=...)"
        )
    got_state = query.get("state", [""])[0]
    if not secrets.compare_digest(got_state.encode(), expected_state.encode()):
        raise ExactError(
            "the state in that URL does not match this run's login link: it comes from another login attempt; "
            "open the link printed by this run and paste the URL it leads to"
        )
    # parse_qs already turned %21 back into '!', which is what the token endpoint wants.
    return query["code"][0]


def run_auth(
    config: Mapping[str, Any],
    *,
    redirect_uri: str | None = None,
    mode: str = "auto",
    open_browser: bool = False,
    force_login: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
) -> int:
    """The interactive login. ``mode``: auto (callback for a local redirect URI, else paste),
    callback, or paste. Returns the exit code; raises ExactError for anything that went wrong."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    redirect_uri = redirect_uri or str(config.get("redirect_uri") or "")
    missing = [key for key in ("client_id", "client_secret") if not config.get(key)]
    if not redirect_uri:
        missing.append("redirect_uri")
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} missing from the config: copy them from your app at apps.exactonline.com"
        )
    base_url = base_url_of(config)
    manager = token_manager_from_config(config, base_url)
    oauth, store = manager.oauth, manager.store
    manager.check_can_save()  # a store that cannot take the tokens fails now, before the login

    if mode == "auto":
        mode = "callback" if is_local_redirect(redirect_uri) else "paste"
    if mode == "callback" and not is_local_redirect(redirect_uri):
        raise ConfigError(
            f"--callback needs a redirect URI on http://localhost or http://127.0.0.1, not {redirect_uri}"
        )

    server = _CallbackServer(redirect_uri) if mode == "callback" else None
    try:
        if server is not None:
            redirect_uri = server.redirect_uri
        state = secrets.token_urlsafe(24)
        url = oauth.authorization_url(redirect_uri, state, force_login=force_login)
        print("Open this link in a browser, log in to Exact Online and choose the divisions to grant:", file=out)
        print(f"\n  {url}\n", file=out)
        print(
            f"(If Exact shows an error about the redirect URI, {redirect_uri} is not exactly the redirect URI "
            "registered for this app at apps.exactonline.com: fix redirect_uri in the config.)",
            file=out,
        )
        if open_browser:
            webbrowser.open(url)
        if server is not None:
            print(f"Waiting for the redirect to {redirect_uri} ...", file=out, flush=True)
            redirected = server.wait(wait_seconds)
        else:
            print(
                "After logging in, the browser goes to your redirect URI (the page itself may fail to load; "
                "that is fine).\nCopy the full address from the address bar and paste it here within 3 minutes:",
                file=out,
                flush=True,
            )
            redirected = _read_pasted_url(stdin)
    finally:
        if server is not None:
            server.close()

    code = parse_redirect(redirected, state)
    if manager.save_login(lambda: oauth.exchange_code(code, redirect_uri)):
        print(f"Tokens saved to {store.describe()}.", file=out)

    # The login itself is done; a failure from here on must not read as "auth failed".
    try:
        _print_grants(_Api(base_url, manager, None), out)
    except ExactAPIError as exc:
        print(f"The tokens are saved, but listing your divisions failed: {exc}", file=out)
    return 0


def _print_grants(api: _Api, out: IO[str]) -> None:
    me = current_user(api)
    division = me.get("CurrentDivision")
    print(f"Logged in as {me.get('FullName') or me.get('UserName') or 'unknown user'}.", file=out)
    if not division:
        return
    divisions = list_divisions(api, int(division))
    print(f"Divisions you granted access to (current: {division}):", file=out)
    for row in divisions:
        print(f"  {row.get('Code')}  {row.get('Description') or ''}".rstrip(), file=out)
    codes = ", ".join(str(row.get("Code")) for row in divisions)
    print(f'To sync them, set "divisions": [{codes}] in the config (or leave it out for all).', file=out)


def _read_pasted_url(stdin: IO[str]) -> str:
    while True:
        line = stdin.readline()
        if not line:
            raise ExactError("no URL was pasted (end of input); run the auth command again")
        if line.strip():
            return line.strip()


def load_config(paths: list[str]) -> dict[str, Any]:
    """Merge JSON config files in order; keys still missing come from TAP_EXACTONLINE_<KEY> variables."""
    config: dict[str, Any] = {}
    for path in paths:
        if path == "ENV":
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"config file {path} is not valid JSON") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a JSON object")
        config.update(loaded)
    for key in ("client_id", "client_secret", "redirect_uri", "base_url", "country", "token_store"):
        value = os.environ.get(ENV_PREFIX + key.upper())
        if value and not config.get(key):
            config[key] = value
    return config


def main_auth(argv: list[str]) -> int:
    """Entry point for ``tap-exactonline auth ...`` (argv without the program name)."""
    if argv and argv[0] == "auth":
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="tap-exactonline auth",
        description="Log in to Exact Online once and save the tokens to the token store.",
    )
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="config JSON (repeatable; ENV or missing keys: TAP_EXACTONLINE_* variables)")
    parser.add_argument("--redirect-uri", help="override redirect_uri from the config")
    parser.add_argument("--token-store", help="override token_store from the config")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--paste", dest="mode", action="store_const", const="paste",
                     help="paste the redirected URL (default unless the redirect URI is on localhost)")
    how.add_argument("--callback", dest="mode", action="store_const", const="callback",
                     help="receive the redirect on a local server (redirect URI on http://localhost)")
    parser.add_argument("--open-browser", action="store_true", help="open the login link in the default browser")
    parser.add_argument("--force-login", action="store_true", help="make Exact ask for the login again")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_SECONDS, metavar="SECONDS",
                        help="how long to wait for the redirect in callback mode")
    args = parser.parse_args(argv)
    redact.install()
    try:
        config = load_config(args.config)
        if args.token_store:
            config["token_store"] = args.token_store
        return run_auth(
            config,
            redirect_uri=args.redirect_uri,
            mode=args.mode or "auto",
            open_browser=args.open_browser,
            force_login=args.force_login,
            wait_seconds=args.wait,
        )
    except ConfigError as exc:
        print(f"tap-exactonline auth: config error: {exc}", file=sys.stderr)
        return 2
    except ExactError as exc:
        print(f"tap-exactonline auth: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tap-exactonline auth: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # python -m tap_exactonline.auth ...
    sys.exit(main_auth(sys.argv[1:]))
