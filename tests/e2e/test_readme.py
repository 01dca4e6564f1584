"""The README as written: every command of its ```bash blocks, in order, in three fresh copies (the
demo's block; the blocks up to writeback; the rest: see DEMO_BLOCKS).

What differs from a person following it, and why:
* Exact is the sandbox: ``config.json`` (the README's JSON block) gets ``base_url``, and the
  ``prod`` environment gets ``TAP_EXACTONLINE_BASE_URL``; the placeholders (``<client id>``, ...)
  are filled with the sandbox's app and a throwaway warehouse database.
* The copy reuses this checkout's venvs and Meltano plugins as read-only layers (CI installs them
  from scratch in a fresh clone with ``bash .ci/run``), and the bytecode of its modules. Each
  command runs in a mount namespace of its own in which the copy sits at this checkout's path, so
  every absolute path in the venvs (script shebangs, the editable installs' ``.pth``) means the
  copy, and each venv is an overlay: this checkout's venv below, a layer of the copy's above that
  takes every write (the embedded PostgreSQL chmods its own files when run as root). Nothing the
  README runs can write to this checkout, and the test fails if a command installed anything.
  Without mount namespaces (not root), the copy shares nothing and installs its own, from the
  machine's pip and uv caches.
* ``$HOME`` is a temporary folder (the machine's pip and uv caches and pip configuration stay).
* Long commands run in a smaller form that still starts with the README's literal command
  (SMALLER): the test suite only collects, the shards job runs 3 shards for the sandbox's 3
  divisions and retries at once. (The benchmarks live in docs/benchmarks.md, not in the README:
  they take minutes of CPU to print figures, and assert nothing.)
* The browser of the auth command is a GET of the consent URL (the sandbox consents at once);
  servers (the sandbox command, ``dagster dev``) are stopped once they say they are up.
* The third test's sandbox is hostile while the shards run (tests/e2e/shards.py): tokens that expire
  every 3 s, late answers, a refused call; it is also the scaling-out test. Its writeback runs are
  checked against what the README says of them (assert_writeback).
* Commands are a minute apart on the sandbox's clock, as typed commands are: a run never waits out
  a minute window that the previous command's calls filled.

``-s`` prints the seconds each command took. It replaces the former test_demo.py: the demo is the
README's first command.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import requests
from psycopg.conninfo import conninfo_to_dict

from scripts import bootstrap
from tests.e2e import shards
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.readme]

SMALLER = {
    "bash scripts/test.sh": "bash scripts/test.sh --collect-only -q",
    # The README's 8 shards, for the sandbox's 3 divisions (tests/e2e/shards.py): more would start
    # Meltano, the tap and the loader for no division. The export stays as written, for the commands
    # after it. The failed shard is retried at once, not after the default 5 minutes.
    "DAGSTER_HOME=$PWD/.dagster .venv-orchestrate/bin/dagster job execute":
        "DAGSTER_HOME=$PWD/.dagster EXACT_SHARDS=3 EXACT_SHARD_RETRY_DELAY=0 .venv-orchestrate/bin/dagster job execute",
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


# This checkout's venvs and plugins, which the copy reuses read-only (see the module's docstring).
SHARED = (".venv", ".venv-meltano", ".venv-orchestrate", ".meltano/extractors", ".meltano/loaders",
          ".meltano/utilities")


def mount_namespaces() -> bool:
    """Whether commands can run in a mount namespace of their own, with overlays (root, as in CI's
    container)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as probe:
        for name in ("lower", "upper", "work", "merged"):
            os.mkdir(f"{probe}/{name}")
        options = f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work"
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "overlay", "overlay",
                               "-o", options, f"{probe}/merged"], capture_output=True).returncode == 0


def fresh_copy(share: bool) -> Path:
    """The files of a clone (tracked and new, nothing ignored) in a temporary folder; with ``share``,
    empty folders where the shared venvs will be mounted, and the stamps that say they are current."""
    if share:
        # Current stamps here, copied below: the copy's bootstrap (the demo and scripts/test.sh
        # run it) finds nothing to install. Were one out of date, it would install into the copy's
        # layer (and the test fail), never into this checkout's plugins.
        bootstrap.bootstrap(orchestrate=True)
    # Not under pytest's tmp_path: the demo's embedded PostgreSQL runs as another user (as root),
    # which must traverse the parents; pytest keeps /tmp/pytest-of-root closed.
    copy = Path(tempfile.mkdtemp(prefix="tap-exactonline-readme-"))
    copy.chmod(0o755)
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.splitlines()
    for name in tracked:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
            if share and name.endswith(".py"):
                copy_bytecode(name, copy)
    if share:
        for name in SHARED:
            (copy / name).mkdir(parents=True)
        shutil.copy2(ROOT / ".meltano" / ".plugins.stamp", copy / ".meltano" / ".plugins.stamp")
    return copy


def copy_bytecode(name: str, copy: Path) -> None:
    """The .pyc that the bootstrap compiled from this checkout's module ``name``, into the copy: with
    the shared venvs, what a reader has after the demo's bootstrap (scripts/bootstrap.py,
    compile_project). It holds for the copy's file (same size and mtime: copy2); where the two
    differed, Python would compile the copy's own."""
    pyc = Path(importlib.util.cache_from_source(str(ROOT / name)))
    if pyc.exists():
        target = copy / pyc.relative_to(ROOT)
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(pyc, target)


def venv_fingerprint() -> dict[str, tuple[int, bytes]]:
    """What an install into this checkout's venvs rewrites: the stamps, the editable installs' .pth
    and direct_url.json (a reinstall from the copy points them at it), with their mtimes."""
    found = [ROOT / ".meltano" / ".plugins.stamp"]
    for name in SHARED:
        venvs = [ROOT / name] if name.startswith(".venv") else sorted((ROOT / name).glob("*/venv"))
        for venv in venvs:
            found += venv.glob(".*.stamp")
            found += venv.glob("lib/python*/site-packages/*.pth")
            found += venv.glob("lib/python*/site-packages/*.dist-info/direct_url.json")
    return {str(path): (path.stat().st_mtime_ns, path.read_bytes()) for path in found if path.exists()}


class Reader:
    """Runs the README's commands one by one in the copy, keeping what ``export`` sets."""

    def __init__(self, copy: Path, share: bool, env: dict, placeholders: dict[str, str], sandbox) -> None:
        self.copy, self.share, self.env, self.placeholders, self.sandbox = copy, share, env, placeholders, sandbox
        self.ran: list[str] = []
        self.seconds: list[tuple[str, float, float]] = []  # command, wall, CPU of its processes
        # The copy's layer above each shared venv, and overlayfs's work folders (same file system).
        self.layers = Path(tempfile.mkdtemp(prefix="tap-exactonline-readme-layers-"))

    def fill(self, text: str) -> str:
        for placeholder, value in self.placeholders.items():
            text = text.replace(placeholder, value)
        return text

    def argv(self, script: str) -> list[str]:
        """bash running ``script`` in the copy; with sharing, in a mount namespace of its own where
        the copy is at this checkout's path and each shared venv an overlay on this checkout's."""
        if not self.share:
            return ["bash", "-c", f"cd {shlex.quote(str(self.copy))} || exit 97\n{script}"]
        mounts = []
        for name in SHARED:
            upper, work = (self.layers / kind / name.replace("/", "_") for kind in ("upper", "work"))
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            options = f"lowerdir={ROOT / name},upperdir={upper},workdir={work}"
            mounts.append(f"mount -t overlay overlay -o {shlex.quote(options)} {shlex.quote(str(self.copy / name))}")
        mounts += [f"mount --rbind {shlex.quote(str(self.copy))} {shlex.quote(str(ROOT))}",
                   f"cd {shlex.quote(str(ROOT))}"]
        return ["unshare", "--mount", "--propagation", "private", "bash", "-c",
                " && ".join(mounts) + f" || exit 97\n{script}"]

    def installed(self) -> list[str]:
        """What an install wrote into the copy's layers above the shared venvs (nothing should)."""
        marks = (".stamp", ".pth", "direct_url.json", "RECORD")
        return sorted(str(path.relative_to(self.layers)) for path in (self.layers / "upper").rglob("*")
                      if path.name.endswith(marks))

    def run(self, command: str) -> subprocess.CompletedProcess | None:
        self.ran.append(command)
        line = self.fill(command)
        for long, short in SMALLER.items():
            line = line.replace(long, short)
        # Typed commands are a minute apart: no run waits out the minute window of the one before.
        self.sandbox.advance(60)
        started, cpu = time.monotonic(), _children_cpu()
        try:
            if " auth " in f"{line} ":
                return self.log_in(line)
            ready = next((mark for server, mark in SERVERS.items() if server in line), None)
            if ready is not None:
                return self.serve(line, ready)
            return self.bash(command, line)
        finally:
            self.seconds.append((command, time.monotonic() - started, _children_cpu() - cpu))

    def bash(self, command: str, line: str) -> subprocess.CompletedProcess:
        env_file = self.copy / ".readme-env"
        proc = subprocess.run(self.argv(f"set -e\n{line}\nenv -0 > {shlex.quote(str(env_file))}"),
                              cwd=self.copy, env=self.env, capture_output=True, text=True, timeout=900,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{command}\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"
        self.env = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        return proc

    def log_in(self, line: str) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(self.argv(line), cwd=self.copy, env=self.env, text=True,
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
        proc = subprocess.Popen(self.argv(line), cwd=self.copy, env=self.env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            seen = []
            for out in proc.stdout:
                seen.append(out)
                if ready in out:
                    break
            assert ready in "".join(seen), "".join(seen)[-3000:]
        finally:
            stop(proc)

    def print_seconds(self) -> None:
        """Where the time went (shown with -s). CPU is that of the command's processes, steadier than
        wall time on a shared machine; it misses processes their parent never waits for (Dagster's
        step processes)."""
        print(f"\n{'wall s':>7} {'CPU s':>6}  README command (as written)")
        for command, wall, cpu in self.seconds:
            print(f"{wall:7.1f} {cpu:6.1f}  {command[:100]}")
        print(f"{sum(s[1] for s in self.seconds):7.1f} {sum(s[2] for s in self.seconds):6.1f}  "
              f"total of {len(self.seconds)} commands")


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL to the server's processes once it is up, then the rest of its output read: the README
    promises a server that comes up, not how it goes down. (`dagster dev` says it serves while its
    code server and daemon are still loading the definitions, which ignore SIGTERM until done: seen
    still running 20 s after it, a core busy all the while.)"""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tail(text: str) -> str:
    """The end of an output, without the boxes of Rich tracebacks (Meltano's) hiding the cause."""
    return "\n".join(line[:300] for line in text.splitlines() if "│" not in line)[-4000:]


# The README as three tests, on three workers at once (each a minute or more on its own):
# * the first DEMO_BLOCKS blocks: the demo, which brings its own sandbox and embedded warehouse;
# * the blocks from there up to LATER_BLOCKS: installing, logging in, the prod jobs, dbt;
# * the blocks from LATER_BLOCKS on: writeback, Dagster, the sandbox command. A reader who comes back
#   to them has the shell and the token store the blocks before left (`export` lines, the auth
#   command), so this test runs those commands of the blocks before it first (sets_up), and nothing
#   else of them: the runs and installs are the second test's.
# Each starts from a fresh copy; together they run every block, in order within each.
DEMO_BLOCKS = 1
LATER_BLOCKS = 8


def sets_up(command: str) -> bool:
    """What a command leaves for the commands after it: the shell's variables, the stored tokens. (Of the
    two ways to log in, the one without a callback: the other listens on the README's fixed port,
    which the second test may hold at that moment, and both leave the same tokens.)"""
    logs_in = command.startswith("tap-exactonline auth ") and "--callback" not in command
    return command.startswith("export ") or logs_in


def readme_blocks() -> list[str]:
    return bash_blocks((ROOT / "README.md").read_text())


@contextlib.contextmanager
def walk_through(exact, warehouse, token_store: str | None = None) -> Iterator[tuple[Reader, Path]]:
    """A Reader in a fresh copy, with a temporary $HOME and the README's placeholders filled (the token
    store a file there unless given); on leaving, the copy's layers hold no install and this
    checkout's venvs are as they were."""
    readme = (ROOT / "README.md").read_text()
    share = mount_namespaces()
    copy = fresh_copy(share)
    venvs_before = venv_fingerprint()
    home = Path(tempfile.mkdtemp(prefix="tap-exactonline-readme-home-"))
    pg = conninfo_to_dict(warehouse.dsn)
    placeholders = {
        "<client id>": "sandbox-client-id", "<client secret>": "sandbox-secret", "<division>": "101",
        "<token store>": token_store or str(home / "exact" / "tokens.json"),
        "<warehouse host>": str(pg.get("host") or "127.0.0.1"), "<warehouse user>": str(pg.get("user") or "postgres"),
        # target-postgres insists on a password; the test servers trust local connections.
        "<warehouse password>": str(pg.get("password") or "ignored-by-trust-auth"),
        "<warehouse database>": str(pg["dbname"]),
    }
    env = bootstrap.meltano_env({
        "HOME": str(home), "PATH": os.environ["PATH"], **machine_caches(),
        # Exact is the sandbox. The main job keeps its 35 streams: its dbt step needs every table.
        "TAP_EXACTONLINE_BASE_URL": exact.url, "TARGET_EXACTONLINE_BASE_URL": exact.url,
    })
    env = {k: v for k, v in env.items() if not k.startswith(("MELTANO_SYS_DIR_ROOT", "MELTANO_DATABASE_URI"))}
    if pg.get("port"):
        env["TARGET_POSTGRES_PORT"] = str(pg["port"])
    reader = Reader(copy, share, env, placeholders, exact)
    config = json.loads(reader.fill(re.search(r"^```json\n(.*?)^```", readme, flags=re.M | re.S).group(1)))
    (copy / "config.json").write_text(json.dumps({**config, "base_url": exact.url}))
    try:
        yield reader, home
        # The copy installed nothing over the shared venvs: their stamps were current.
        assert reader.installed() == []
    finally:
        reader.print_seconds()
        for folder in (copy, home, reader.layers):
            shutil.rmtree(folder, ignore_errors=True)
    # Nothing was written into this checkout's venvs (the other e2e tests run with them).
    assert venv_fingerprint() == venvs_before


def test_the_demo_and_the_test_command_run_as_written(exact, warehouse):
    (block,) = readme_blocks()[:DEMO_BLOCKS]
    with walk_through(exact, warehouse) as (reader, _):
        demo = reader.run(commands(block)[0])
        assert_demo(demo.stdout, reader.copy)
        for command in commands(block)[1:]:
            reader.run(command)


def test_installing_logging_in_and_the_prod_jobs_run_as_written(exact, warehouse):
    blocks = readme_blocks()[DEMO_BLOCKS:LATER_BLOCKS]
    with walk_through(exact, warehouse) as (reader, home):
        for block in blocks:
            for command in commands(block):
                reader.run(command)
        assert (home / "exact" / "tokens.json").exists()


def test_writeback_dagster_and_the_sandbox_run_as_written(warehouse, tmp_path):
    """Also the scaling-out test: the README's shards run against a hostile sandbox (shards.py), with
    the PostgreSQL token store the README says shards should share."""
    before = [c for b in readme_blocks()[DEMO_BLOCKS:LATER_BLOCKS] for c in commands(b) if sets_up(c)]
    blocks = readme_blocks()[LATER_BLOCKS:]
    assert any(c.startswith("tap-exactonline auth ") for c in before), "no auth command before writeback"
    with psycopg.connect(warehouse.dsn, autocommit=True) as conn:
        conn.execute(shards.DDL_LOG)
    with shards.sandbox(tmp_path) as exact, walk_through(exact, warehouse, warehouse.url.replace(
            "postgresql+psycopg://", "postgresql://")) as (reader, _):
        for command in before:
            reader.run(command)
        for block in blocks:
            for command in commands(block):
                writeback = "csv-to-exact" in command
                rerun = writeback and reader.ran[-1:] == [command]
                edited = writeback and reader.ran[-1].startswith("sed ")
                sharded = "dagster job execute" in command
                if sharded:
                    shards.make_hostile(exact)
                exact.reset_log()
                reader.run(command)
                if writeback:
                    assert_writeback(exact, reader, rerun=rerun, edited=edited)
                if sharded:
                    shards.assert_shards_run(exact, warehouse, shards.dagster_run(reader.copy / ".dagster"))
                    exact.admin("DELETE", "faults")
        # The checks above ran: the README still has the edit and the shards job.
        assert any(c.startswith("sed ") for c in reader.ran) and "dagster job execute" in " ".join(reader.ran)


# The README's CSV file (examples/writeback/accounts.csv), and what its edit (sed) makes of it.
WRITEBACK = {"WB0001": "Writeback Example BV", "WB0002": "Second Example BV"}
RENAMED = {"WB0002": "Second Example Renamed BV"}


def assert_writeback(exact, reader: Reader, *, rerun: bool, edited: bool) -> None:
    """What the README says of each run of csv-to-exact: the first creates the file's accounts; unchanged
    input makes no API call at all; the edited row is updated in place (one PUT). After each, every
    account of the file is in Exact once, and nothing was rejected."""
    log = exact.log()
    writes = [e["method"] for e in log if e.get("method") in ("POST", "PUT", "DELETE") and "oauth2" not in str(e["path"])]
    if sum("csv-to-exact" in command for command in reader.ran) == 1:
        assert writes == ["POST"] * len(WRITEBACK), writes
    if rerun:
        assert log == [], log
    if edited:
        assert writes == ["PUT"], writes
    by_code: dict[str, list[str]] = {}
    for row in exact.records(int(reader.placeholders["<division>"]), "crm/Accounts"):
        by_code.setdefault(str(row.get("Code") or "").strip(), []).append(row["Name"])
    names = {**WRITEBACK, **(RENAMED if edited else {})}
    assert {code: by_code.get(code) for code in names} == {code: [name] for code, name in names.items()}
    rejects = reader.copy / "writeback" / "rejects.jsonl"
    assert not rejects.exists() or not rejects.read_text().strip(), rejects.read_text()[:2000]

def machine_caches() -> dict[str, str]:
    """The machine's pip and uv caches and pip's configuration, which the temporary $HOME would hide:
    a fresh venv's `pip install` then reuses what was downloaded and built before."""
    home, env = Path.home(), os.environ
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"
    cache = Path(env.get("XDG_CACHE_HOME") or home / ".cache")
    found = {"PIP_CACHE_DIR": env.get("PIP_CACHE_DIR") or str(cache / "pip"),
             "UV_CACHE_DIR": env.get("UV_CACHE_DIR") or str(cache / "uv")}
    if not env.get("PIP_CONFIG_FILE") and config.is_file():
        found["PIP_CONFIG_FILE"] = str(config)
    return found


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
    # Each run starts in a minute window of its own on the sandbox's clock: none waits one out.
    assert "waited" not in stdout, stdout[-3000:]
    # The transform ran and its statements were printed; the balance sheet balances (from test_demo.py).
    assert re.search(r"^Profit and loss, division 101, financial year \d{4}", stdout, flags=re.M), stdout[-3000:]
    totals = re.findall(r"^  Total (?:assets|liabilities, equity and result)\s+(-?[\d,]+\.\d\d)$", stdout, flags=re.M)
    assert len(totals) == 2 and totals[0] == totals[1] and totals[0] != "0.00", totals
    # The README shows these statements as the demo prints them.
    printed = re.search(r"^Profit and loss.*?^  Total liabilities, equity and result .*?$", stdout,
                        flags=re.M | re.S).group(0)
    assert printed in (ROOT / "README.md").read_text(), "README's statements differ from the demo's:\n" + printed
    assert not (copy / ".demo" / "pgdata" / "postmaster.pid").exists()  # both servers stopped
