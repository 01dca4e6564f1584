"""The Exact Online sandbox (``python -m exact_sandbox``) as a child process.

Standard library only: used by ``scripts/demo.py``, the benchmarks and the e2e tests.
The sandbox prints ``sandbox listening on http://127.0.0.1:N`` once it serves; its
admin API lives under ``/_sandbox/`` (see CONTRIBUTING.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SandboxError(RuntimeError):
    pass


class SandboxProcess:
    def __init__(self, python: str | Path, args: list[str] | None = None, *, log_path: Path | None = None):
        self.python = str(python)
        self.args = list(args or [])
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> str:
        # Output goes straight to a file, not a pipe: the server outlives a parent that exits
        # (the demo's --keep) and never blocks on a full pipe.
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="sandbox-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-u", "-m", "exact_sandbox", "--port", str(free_port()), *self.args]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=(os.name != "nt"))
        deadline = time.monotonic() + timeout
        while True:
            text = self.output
            if "sandbox listening on " in text:
                line = text.split("sandbox listening on ", 1)[1].splitlines()[0]
                self.url = line.strip().rstrip("/")
                return self.url
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.3)
                self.stop()
                raise SandboxError(f"the sandbox did not start ({' '.join(cmd)}):\n" + self.output[-4000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if os.name != "nt":
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.terminate()
            self.proc.wait(10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except FileNotFoundError:
            return ""

    # -- admin API -------------------------------------------------------------------------------
    def admin(self, method: str, path: str, body: dict | None = None, *, query: dict | None = None):
        url = f"{self.url}/_sandbox/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise SandboxError(f"{method} {url}: {err.code} {err.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def mint_refresh_token(self) -> str:
        return self.admin("POST", "oauth/refresh-token")["refresh_token"]

    def records(self, division: int, path: str) -> list[dict]:
        got = self.admin("GET", f"records/{division}/{path}")
        if isinstance(got, dict):  # {"records": [...]} or a bare list
            got = got.get("records", got.get("d", got))
        return list(got)

    def insert(self, division: int, path: str, records: list[dict]):
        return self.admin("POST", f"records/{division}/{path}", {"records": records})

    def update(self, division: int, path: str, key, changes: dict):
        return self.admin("PATCH", f"records/{division}/{path}", {"key": key, "changes": changes})

    def delete(self, division: int, path: str, key):
        return self.admin("DELETE", f"records/{division}/{path}", query={"key": key})

    def advance(self, seconds: float) -> None:
        """Move the sandbox's clock: its rate-limit windows, error blocks and token lifetimes follow."""
        self.admin("POST", "clock", {"advance": seconds})

    def log(self) -> list[dict]:
        got = self.admin("GET", "log")
        return got["entries"] if isinstance(got, dict) else got

    def reset_log(self) -> None:
        self.admin("DELETE", "log")
