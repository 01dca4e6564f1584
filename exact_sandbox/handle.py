"""``SandboxHandle``: what the pytest fixtures hand out (also works against a sandbox started by hand)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .server import Sandbox


class SandboxHandle:
    def __init__(self, sandbox: Sandbox | None = None, url: str | None = None) -> None:
        self.sandbox = sandbox
        self.url = (url or (sandbox.url if sandbox else "")).rstrip("/")
        knobs = self.admin("GET", "/knobs")["knobs"]
        self.client_id: str = knobs["client_id"]
        self.client_secret: str = knobs["client_secret"]
        self.redirect_uri = "https://example.com/callback"
        value = knobs["divisions"]
        parts = value if isinstance(value, list) else str(value).split(",")
        self.divisions: list[int] = [int(p) for p in parts if str(p).strip()]

    # -- admin API ---------------------------------------------------------------

    def admin(self, method: str, path: str, json_body: Any = None, **kwargs: Any) -> Any:
        """Call ``/_sandbox{path}``; returns parsed JSON (or bytes), raises RuntimeError on errors."""
        if "json" in kwargs:
            json_body = kwargs.pop("json")
        if path.startswith("/_sandbox"):
            path = path[len("/_sandbox"):]
        data = None if json_body is None else json.dumps(json_body).encode()
        request = urllib.request.Request(self.url + "/_sandbox" + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"sandbox admin {method} {path}: {exc.code} {exc.read().decode()}") from None
        return json.loads(body) if "json" in kind else body

    def set(self, **knobs: Any) -> dict[str, Any]:
        return self.admin("POST", "/knobs", knobs)["knobs"]

    def mint_refresh_token(self, divisions: list[int] | None = None,
                           issued_seconds_ago: float | None = None) -> str:
        body: dict[str, Any] = {}
        if divisions is not None:
            body["divisions"] = divisions
        if issued_seconds_ago is not None:
            body["issued_seconds_ago"] = issued_seconds_ago
        return self.admin("POST", "/oauth/refresh-token", body)["refresh_token"]

    def access_token(self, divisions: list[int] | None = None) -> str:
        """A fresh access token through the real token endpoint (one refresh on a new chain)."""
        form = urllib.parse.urlencode({
            "grant_type": "refresh_token", "refresh_token": self.mint_refresh_token(divisions),
            "client_id": self.client_id, "client_secret": self.client_secret}).encode()
        request = urllib.request.Request(self.url + "/api/oauth2/token", data=form, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        entries = self.admin("GET", "/log" + (f"?{query}" if query else ""))["entries"]
        return [e for e in entries if all(_same(e.get(k), v) for k, v in filters.items())]

    def reset_log(self) -> None:
        self.admin("DELETE", "/log")

    def counters(self) -> list[dict[str, Any]]:
        return self.admin("GET", "/counters")["counters"]

    def chains(self) -> list[dict[str, Any]]:
        return self.admin("GET", "/oauth/chains")["chains"]

    def advance(self, seconds: float) -> None:
        self.admin("POST", "/clock", {"advance": seconds})

    def freeze(self, at: float | None = None) -> float:
        """Stop the sandbox's clock (at ``at``, epoch seconds); returns the frozen time."""
        return self.admin("POST", "/clock", {"freeze": True if at is None else at})["now"]

    def thaw(self) -> None:
        self.admin("POST", "/clock", {"freeze": False})

    def now(self) -> float:
        return self.admin("GET", "/clock")["now"]

    def records(self, division: int, path: str) -> list[dict[str, Any]]:
        return self.admin("GET", f"/records/{division}/{path}")["records"]

    def insert(self, division: int, path: str, *records: dict[str, Any]) -> list[dict[str, Any]]:
        return self.admin("POST", f"/records/{division}/{path}", {"records": list(records)})["records"]

    def update(self, division: int, path: str, key: Any, **changes: Any) -> dict[str, Any]:
        return self.admin("PATCH", f"/records/{division}/{path}", {"key": key, "changes": changes})["record"]

    def delete(self, division: int, path: str, key: Any) -> list[dict[str, Any]]:
        return self.admin("DELETE", f"/records/{division}/{path}?key={urllib.parse.quote(str(key))}")["deleted"]

    def faults(self, *rules: dict[str, Any]) -> None:
        self.admin("POST", "/faults", {"rules": list(rules)})

    def api_url(self, division: int | None, path: str) -> str:
        if division is None:
            return f"{self.url}/api/v1/{path}"
        if path.startswith("beta/{division}/"):
            return f"{self.url}/api/v1/beta/{division}/{path[len('beta/{division}/'):]}"
        return f"{self.url}/api/v1/{division}/{path}"

    def stop(self) -> None:
        if self.sandbox is not None:
            self.sandbox.stop()


def _same(value: Any, wanted: Any) -> bool:
    if value == wanted:
        return True
    return value is not None and str(value) == str(wanted)
