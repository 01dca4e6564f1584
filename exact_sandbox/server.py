"""The HTTP server: routing, faults, the request log, and the ``Sandbox`` object tests hold.

One ``ThreadingHTTPServer`` on loopback with HTTP/1.1 keep-alive. A response
goes out in a single write (headers and body together), so keep-alive clients
never wait on Nagle and delayed ACKs.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from . import admin
from .api import Api, Target, resolve
from .faults import AFTER, BEFORE, Faults
from .knobs import Knobs
from .limits import RateLimits
from .metadata import Registry
from .odata import last_value
from .oauth import OAuth
from .reqlog import RequestLog
from .store import Store
from .timeutil import Clock
from .wire import Response, exact_error, html_response

_REASONS = BaseHTTPRequestHandler.responses


class Request:
    """One parsed HTTP request, plus the log entry the handlers fill in."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.raw_path, _, self.query = target.partition("?")
        self.headers = headers
        self.body = body
        self.pairs = parse_qsl(self.query, keep_blank_values=True)
        self.log: dict[str, Any] = {}

    def param(self, name: str, default: Any = None) -> Any:
        return last_value(self.pairs, name, default)


class Sandbox:
    """A running (or startable) Exact Online stand-in."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", volumes: dict[str, int] | None = None,
                 metadata: str | None = None, **knobs: Any) -> None:
        self.knobs = Knobs(**knobs)
        self.clock = Clock()
        self.registry = Registry.shared(metadata)
        self.store = Store(self.registry, self.knobs, self.clock, volumes)
        self.oauth = OAuth(self.knobs, self.clock)
        self.limits = RateLimits(self.knobs, self.clock)
        self.faults = Faults(self.knobs.faults, self.knobs.fault_seed)
        self.log = RequestLog(self.knobs.log_max)
        self.api = Api(self)
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.knobs.base_url or f"http://{self.host}:{self.port}"

    def start(self) -> "Sandbox":
        handler = type("BoundHandler", (_Handler,), {"sandbox": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self.store.base_url = self.base_url
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), name="sandbox",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever_started(self) -> None:
        """Block until the server thread ends (after :meth:`start`)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return self.base_url

    def apply_knobs(self, values: dict[str, Any]) -> None:
        self.knobs.update(values)
        if "faults" in values or "fault_seed" in values:
            self.faults.replace(self.knobs.faults, self.knobs.fault_seed)
        if "log_max" in values:
            self.log.resize(self.knobs.log_max)
        if "base_url" in values:
            self.store.base_url = self.base_url

    # -- routing -----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.raw_path
        if path.startswith("/_sandbox/") or path == "/_sandbox":
            return admin.handle(self, request)
        if path in ("/api/oauth2/auth", "/api/oauth2/token"):
            logical = "oauth2/" + path.rsplit("/", 1)[1]
            return self._logged(request, logical, None, lambda: self._oauth(request, logical))
        if path.startswith("/api/v1/"):
            target = resolve(self, path)
            if isinstance(target, Response):
                return self._logged(request, path, None, lambda: target)
            return self._logged(request, target.path, target.division, lambda: self._api(request, target))
        if path == "/docs/SysAttachment.aspx":
            return self._logged(request, "docs/SysAttachment.aspx", None, lambda: admin.download(self, request))
        if path == "/docs/Login.aspx":
            return html_response(200, "<html><body>Exact Online sandbox: there is no login page.</body></html>")
        return exact_error(404, "Resource not found.")

    def _api(self, request: Request, target: Target) -> Response:
        return self.api.serve(request, target)

    def _oauth(self, request: Request, logical: str) -> Response:
        if logical == "oauth2/auth":
            if request.method != "GET":
                return html_response(405, "<html><body>Method not allowed</body></html>")
            return self.oauth.authorize(dict(request.pairs))
        if request.method != "POST":
            return exact_error(405, "Method not allowed")
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        request.log["grant_type"] = form.get("grant_type")
        request.log["client"] = form.get("client_id")
        return self.oauth.token(form, request.headers)

    def _logged(self, request: Request, path: str, division: int | None, serve) -> Response:
        """Faults around the real work, then one log entry (never with a token, code or secret)."""
        started = time.perf_counter()
        method = request.method
        fault = None
        latency = self.knobs.latency_ms
        if latency:
            time.sleep(latency / 1000)
        response = None
        for rule in self.faults.pick(BEFORE, method, path, division):
            fault = rule.kind
            if rule.kind in ("latency", "timeout"):
                time.sleep(rule.ms / 1000)
                continue
            response = _fault_response(rule)
            break
        if response is None:
            response = serve()
            for rule in self.faults.pick(AFTER, method, path, division):
                fault = rule.kind
                if rule.kind == "drop_after":
                    response = Response(0, drop=True)
                elif rule.kind == "malformed" and not response.drop:
                    body = response.body or b'{"d":{"results":[]}}'
                    response = Response(200, body[: max(1, len(body) // 2)], response.content_type,
                                        response.headers, rows=0)
        self.log.add({
            "ts": self.clock.now(), "method": method, "path": path, "division": division,
            "query": _loggable_query(request, path), "status": response.status if not response.drop else None,
            "client": request.log.get("client"), "rows": response.rows, "fault": fault,
            "grant_type": request.log.get("grant_type"),
            "ms": round((time.perf_counter() - started) * 1000, 2),
        })
        return response


def _loggable_query(request: Request, path: str) -> dict[str, str]:
    if path.startswith("oauth2/"):  # codes and states are secrets of a kind
        return {k: v for k, v in request.pairs if k in ("client_id", "response_type", "divisions")}
    return {k: v for k, v in request.pairs}


def _fault_response(rule) -> Response:
    if rule.kind == "drop":
        return Response(0, drop=True)
    if rule.kind == "html":
        return html_response(200, "<html><head><title>Exact Online</title></head><body><h1>Maintenance"
                                  "</h1><p>Exact Online is being updated.</p></body></html>")
    if rule.kind == "refuse":
        return exact_error(rule.status, rule.message)
    if rule.status == 503:
        return html_response(503, "<html><body><h1>Service Unavailable</h1></body></html>")
    if rule.status >= 500:
        # A genuine server fault: never Exact's JSON error object (that is how Exact refuses a write).
        return html_response(rule.status, "<html><body><h1>Server Error in '/' Application.</h1></body></html>")
    return exact_error(rule.status, "An error has occurred.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def get_request(self):
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    sandbox: Sandbox

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr noise
        pass

    def _run(self) -> None:
        sandbox = self.sandbox
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        if length > sandbox.knobs.max_message_bytes:
            self.close_connection = True
            self._send(exact_error(413, "The request is larger than the maximum message size."))
            return
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, headers, body)
        try:
            response = sandbox.handle(request)
        except Exception as exc:  # a sandbox bug must look like a server error, not a hang
            response = exact_error(500, f"Sandbox internal error: {type(exc).__name__}: {exc}")
            import traceback

            traceback.print_exc()
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, ('',))[0]}",
                 f"Date: {self.date_time_string()}", "Server: Microsoft-IIS/10.0",
                 "X-Content-Type-Options: nosniff", f"Content-Length: {len(response.body)}"]
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + response.body if self.command != "HEAD" else head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_MERGE = do_HEAD = _run
