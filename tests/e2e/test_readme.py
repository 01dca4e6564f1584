"""The README as written: every command of its ```bash blocks, in order, in a fresh copy.

What differs from a person following it, and why:
* Exact is the sandbox: ``config.json`` (the README's JSON block) gets ``base_url``, and the
  ``prod`` environment gets ``TAP_EXACTONLINE_BASE_URL``; the placeholders (``<client id>``, ...)
  are filled with the sandbox's app and a throwaway warehouse database.
* The copy reuses this checkout's ``.venv``, ``.venv-meltano`` and Meltano plugins (CI installs
  them from scratch in a fresh clone with ``bash .ci/run``), and ``$HOME`` is a temporary folder.
* Long commands run in a smaller form that still starts with the README's literal command
  (SMALLER): the test suite only collects, the benchmarks read fewer rows.
* The browser of the auth command is a GET of the consent URL (the sandbox consents at once);
  servers (the sandbox command) are stopped once they listen.

It replaces the former test_demo.py: the demo is the README's first command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
from psycopg.conninfo import conninfo_to_dict

from scripts import bootstrap
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.readme]

SMALLER = {
    "bash scripts/test.sh": "bash scripts/test.sh --collect-only -q",
    "--rows 100000": "--rows 2000",
    "bench/bench_sandbox.py": "bench/bench_sandbox.py --lines 5000",
    "bench/bench_shards.py": "bench/bench_shards.py --streams accounts --shards 2 --divisions 101,103",
}
# Commands that start a server, and what they print once it is up.
SERVERS = {"-m exact_sandbox": "sandbox listening on http://127.0.0.1:8765", "dagster dev": "Serving dagster-webserver"}


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


def commands(block: str) -> list[str]:
    """One command a line (a line ending in `|` or `\\` goes on); `  # ...` comments dropped (quotes never
    hold `  #` in the README)."""
    found, pending = [], ""
    for raw in block.splitlines():
        line = raw.split("  #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        elif not pending.endswith("|"):
            found.append(pending)
            pending = ""
    return found


def fresh_copy() -> Path:
    # The copy shares this checkout's venvs and plugins: bring them up to date first, so the
    # copy's own bootstrap (the demo runs it) finds every stamp current and installs nothing into
    # them (an editable install from the copy would point this checkout's venvs at the copy).
    bootstrap.bootstrap()
    # Not under pytest's tmp_path: the demo's embedded PostgreSQL runs as another user (as root),
    # which must traverse the parents; pytest keeps /tmp/pytest-of-root closed.
    copy = Path(tempfile.mkdtemp(prefix="tap-exactonline-readme-"))
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.splitlines()
    for name in tracked:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    for venv in (".venv", ".venv-meltano"):
        (copy / venv).symlink_to(ROOT / venv, target_is_directory=True)
    plugins = copy / ".meltano"
    plugins.mkdir()
    for kind in ("extractors", "loaders"):
        (plugins / kind).symlink_to(ROOT / ".meltano" / kind, target_is_directory=True)
    shutil.copy2(ROOT / ".meltano" / ".plugins.stamp", plugins / ".plugins.stamp")
    return copy


class Reader:
    """Runs the README's commands one by one in ``cwd``, keeping what ``export`` sets."""

    def __init__(self, cwd: Path, env: dict, placeholders: dict[str, str], sandbox) -> None:
        self.cwd, self.env, self.placeholders, self.sandbox = cwd, env, placeholders, sandbox
        self.ran: list[str] = []

    def fill(self, text: str) -> str:
        for placeholder, value in self.placeholders.items():
            text = text.replace(placeholder, value)
        return text

    def run(self, command: str) -> subprocess.CompletedProcess | None:
        self.ran.append(command)
        line = self.fill(command)
        for long, short in SMALLER.items():
            line = line.replace(long, short)
        if " auth " in f"{line} ":
            return self.log_in(line)
        ready = next((mark for server, mark in SERVERS.items() if server in line), None)
        if ready is not None:
            return self.serve(line, ready)
        env_file = self.cwd / ".readme-env"
        proc = subprocess.run(["bash", "-c", f"set -e\n{line}\nenv -0 > {shlex.quote(str(env_file))}"],
                              cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=900,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{command}\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"
        self.env = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        return proc

    def log_in(self, line: str) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(["bash", "-c", line], cwd=self.cwd, env=self.env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        consent = next((out.strip() for out in proc.stdout if "/api/oauth2/auth?" in out), None)
        assert consent, proc.stderr.read()
        redirect = requests.get(consent, allow_redirects=False, timeout=30).headers["Location"]
        if "--callback" in line:
            requests.get(redirect, timeout=30)  # the browser lands on the local callback
            out, err = proc.communicate(timeout=60)
        else:
            out, err = proc.communicate(redirect + "\n", timeout=60)
        assert proc.returncode == 0, out + err
        assert "Tokens saved to" in out and "101" in out, out
        return subprocess.CompletedProcess(line, 0, out, err)

    def serve(self, line: str, ready: str) -> None:
        """A server: started, seen to say it is up, stopped (with everything it started)."""
        proc = subprocess.Popen(["bash", "-c", line], cwd=self.cwd, env=self.env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            seen = []
            for out in proc.stdout:
                seen.append(out)
                if ready in out:
                    break
            assert ready in "".join(seen), "".join(seen)[-3000:]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def _tail(text: str) -> str:
    """The end of an output, without the boxes of Rich tracebacks (Meltano's) hiding the cause."""
    return "\n".join(line[:300] for line in text.splitlines() if "│" not in line)[-4000:]


def test_every_readme_command_runs_as_written(exact, warehouse, tmp_path):
    readme = (ROOT / "README.md").read_text()
    copy = fresh_copy()
    home = Path(tempfile.mkdtemp(prefix="tap-exactonline-readme-home-"))
    pg = conninfo_to_dict(warehouse.dsn)
    placeholders = {
        "<client id>": "sandbox-client-id", "<client secret>": "sandbox-secret", "<division>": "101",
        "<token store>": str(home / "exact" / "tokens.json"),
        "<warehouse host>": str(pg.get("host") or "127.0.0.1"), "<warehouse user>": str(pg.get("user") or "postgres"),
        # target-postgres insists on a password; the test servers trust local connections.
        "<warehouse password>": str(pg.get("password") or "ignored-by-trust-auth"),
        "<warehouse database>": str(pg["dbname"]),
    }
    env = bootstrap.meltano_env({
        "HOME": str(home), "PATH": os.environ["PATH"],
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        # Exact is the sandbox. The main job keeps its 35 streams: its dbt step needs every table.
        "TAP_EXACTONLINE_BASE_URL": exact.url, "TARGET_EXACTONLINE_BASE_URL": exact.url,
    })
    env = {k: v for k, v in env.items() if not k.startswith(("MELTANO_SYS_DIR_ROOT", "MELTANO_DATABASE_URI"))}
    if pg.get("port"):
        env["TARGET_POSTGRES_PORT"] = str(pg["port"])
    reader = Reader(copy, env, placeholders, exact)
    config = json.loads(reader.fill(re.search(r"^```json\n(.*?)^```", readme, flags=re.M | re.S).group(1)))
    (copy / "config.json").write_text(json.dumps({**config, "base_url": exact.url}))
    try:
        blocks = bash_blocks(readme)
        demo = reader.run(commands(blocks[0])[0])
        assert_demo(demo.stdout, copy)
        for command in commands(blocks[0])[1:]:
            reader.run(command)
        for block in blocks[1:]:
            for command in commands(block):
                rerun = "csv-to-exact" in command and reader.ran[-1] == command
                exact.reset_log()
                reader.run(command)
                if rerun:  # the README says: unchanged input, no API call at all
                    assert exact.log() == []
        assert reader.ran == [c for b in blocks for c in commands(b)]
        assert (home / "exact" / "tokens.json").exists()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def assert_demo(stdout: str, copy: Path) -> None:
    """What the demo promises: tables with rows, an incremental rerun with tombstones, a free rerun."""
    rows = dict(re.findall(r"^exactonline\.(\w+)\s+([\d,]+)", stdout, flags=re.M))
    core = ("accounts", "gl_accounts", "transaction_lines", "contacts", "items")
    assert all(int(rows[t].replace(",", "")) > 0 for t in core), stdout[-3000:]
    assert re.search(r"^\d+ tables\s+[\d,]+$", stdout, flags=re.M), stdout[-2000:]
    assert "rows updated: 2 in accounts" in stdout, stdout[-3000:]
    assert "tombstones landed: 2 in accounts, 3 in transaction_lines" in stdout, stdout[-3000:]
    assert re.search(r"API calls used by the rerun: [1-9]\d* for 3 divisions", stdout), stdout[-3000:]
    assert "second run: 0 API calls" in stdout and re.search(r"first run: [1-9]\d* API calls", stdout)
    # The transform ran and its statements were printed; the balance sheet balances (from test_demo.py).
    assert re.search(r"^Profit and loss, division 101, financial year \d{4}", stdout, flags=re.M), stdout[-3000:]
    totals = re.findall(r"^  Total (?:assets|liabilities, equity and result)\s+(-?[\d,]+\.\d\d)$", stdout, flags=re.M)
    assert len(totals) == 2 and totals[0] == totals[1] and totals[0] != "0.00", totals
    # The README shows these statements as the demo prints them.
    printed = re.search(r"^Profit and loss.*?^  Total liabilities, equity and result .*?$", stdout,
                        flags=re.M | re.S).group(0)
    assert printed in (ROOT / "README.md").read_text(), "README's statements differ from the demo's:\n" + printed
    assert not (copy / ".demo" / "pgdata" / "postmaster.pid").exists()  # both servers stopped
