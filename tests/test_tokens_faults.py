"""The installed programs on a broken machine (issue #15 item 6): a full disk and a read-only file
system (a real 64 KiB tmpfs, mounted by the test), damaged store files, a lock that cannot be made,
a store write that fails after Exact answered, an unreachable PostgreSQL store.

Every failure asserts the exit code, one stderr line naming the cause, no traceback and no secret;
then that the next run refreshes without a new login, counting token calls in the sandbox's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exactonline_api.oauth import OAuthClient
from exactonline_api.safefile import FAIL_ENV
from exactonline_api.tokens import FileTokenStore
from tests.targetrun import DATA, target_config, token_strings
from tests.tokens_support import AuthProcess, write_auth_config

pytestmark = pytest.mark.slow  # every test starts the programs a few times

BIN = Path(sys.executable).parent
TRACEBACK = "Traceback (most recent call last)"


class SmallDisk:
    """A 64 KiB tmpfs at ``path`` (root can mount here; see the note below) for real ENOSPC/EROFS.

    Mounting needs root (CI and the dev machines run as root). Elsewhere the same errors are
    injected at the store's write steps (``EXACT_TEST_FAIL_AT``), so the test still runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.env: dict[str, str] = {}
        self.mounted = os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(path)], capture_output=True
        ).returncode == 0
        self.filler = path / "filler"

    def fill(self) -> None:
        if not self.mounted:
            self.env = {FAIL_ENV: "reserve:ENOSPC,replace:ENOSPC"}
            return
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):  # until the disk is full
                while True:
                    os.write(fd, b"\0" * 1024)
        finally:
            os.close(fd)

    def free(self) -> None:
        self.env = {}
        self.filler.unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        if not self.mounted:
            self.env = {FAIL_ENV: "reserve:EROFS,replace:EROFS"} if on else {}
            return
        subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(self.path)], check=True)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def disk(tmp_path):
    small = SmallDisk(tmp_path / "disk")
    try:
        yield small
    finally:
        small.close()


def run(program: str, config: dict, tmp_path: Path, *args: str, env: dict | None = None, stdin: str = ""):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    if program == "target" and not args:
        args = ("--input", str(DATA / "accounts_contacts.singer"))
    proc = subprocess.run([str(BIN / f"{program}-exactonline"), "--config", str(path), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, input=stdin,
                          env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


def token_calls(sandbox, grant: str = "refresh_token") -> list[int]:
    return [r["status"] for r in sandbox.requests() if r["path"] == "oauth2/token" and r.get("grant_type") == grant]


def secrets_in(config: dict, *paths: Path) -> list[str]:
    found = [config["client_secret"], config.get("refresh_token") or ""]
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            found += token_strings(json.loads(path.read_bytes().rstrip(b"\0")))
    return [s for s in found if s]


def the_one_line(stderr: str, program: str, cause: str, config: dict, *stores: Path) -> str:
    """The failure line: last on stderr, the only line naming ``cause``; no traceback, no secret."""
    assert TRACEBACK not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert [line for line in lines if cause in line] == [lines[-1]], stderr[-3000:]
    assert lines[-1].startswith(f"{program}-exactonline: ")
    assert not [s[:10] for s in secrets_in(config, *stores) if s in stderr]
    return lines[-1].removeprefix(f"{program}-exactonline: ")


def connected(code: int, out: str, err: str) -> None:
    assert code == 0 and "Connected to" in out, err[-3000:]


@pytest.fixture
def tap(sandbox):
    """A tap config and a store holding a live token pair, as a first run would have left them."""
    # Several runs share one sandbox minute, on a sandbox clock moved ahead of the tap's
    # (expire_access_token): with Exact's 60 calls a minute the tap would wait out a window it
    # sees 10 minutes away. The limits have their own tests; here they only cost time.
    sandbox.set(minutely_limit=10_000)

    def make(store: Path) -> dict:
        seed = sandbox.mint_refresh_token()
        store_obj = FileTokenStore(store, client_id=sandbox.client_id)
        with store_obj.locked():
            store_obj.write(OAuthClient(sandbox.url, sandbox.client_id, sandbox.client_secret).refresh(seed))
        assert token_calls(sandbox) == [200]
        sandbox.reset_log()
        return {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret, "token_store": str(store),
                "base_url": sandbox.url, "divisions": list(sandbox.divisions)}
    return make


def expire_access_token(sandbox) -> None:
    # Exact's clock moves past the access token's 600 s: the next call gets 401 and must refresh.
    sandbox.advance(601)
    sandbox.reset_log()


def test_full_disk_stops_before_the_refresh_and_the_next_run_refreshes(sandbox, tap, disk, tmp_path):
    store = disk.path / "tokens.json"
    config = tap(store)
    before = store.read_bytes()
    expire_access_token(sandbox)
    disk.fill()
    code, out, err = run("tap", config, tmp_path, "--test", env=disk.env)
    line = the_one_line(err, "tap", "No space left on device", config, store)
    assert code == 1 and line == (
        f"cannot reserve room for the refreshed tokens in {disk.path}/.tokens.json.pending (No space left on device): "
        f"no space left on the device holding {disk.path}: free some space; nothing was sent to Exact, the stored "
        "tokens are unchanged")
    assert token_calls(sandbox) == [] and store.read_bytes() == before
    disk.free()
    connected(*run("tap", config, tmp_path, "--test", env=disk.env))
    assert token_calls(sandbox) == [200] and token_calls(sandbox, "authorization_code") == []


def test_read_only_file_system_uses_a_valid_token_and_refuses_to_refresh(sandbox, tap, disk, tmp_path):
    store = disk.path / "tokens.json"
    config = tap(store)
    disk.read_only()
    connected(*run("tap", config, tmp_path, "--test", env=disk.env))  # the access token is still good
    assert token_calls(sandbox) == []
    expire_access_token(sandbox)
    code, out, err = run("tap", config, tmp_path, "--test", env=disk.env)
    line = the_one_line(err, "tap", "Read-only file system", config, store)
    assert code == 1 and line.endswith(
        f"(Read-only file system): {disk.path} is on a read-only file system: make it writable or point "
        "token_store elsewhere; nothing was sent to Exact, the stored tokens are unchanged")
    assert token_calls(sandbox) == []
    # A store others may read must be made private first; on a read-only disk that cannot be done.
    disk.read_only(False)
    os.chmod(store, 0o644)
    disk.read_only()
    sandbox.reset_log()
    code, out, err = run("tap", config, tmp_path, "--test", env=disk.env or {FAIL_ENV: "chmod:EROFS"})
    line = the_one_line(err, "tap", "readable by other users", config, store)
    assert code == 1 and line == (
        f"token store {store} is readable by other users (mode 0644) and its mode cannot be changed (Read-only file "
        f"system): run `chmod 600 {store}` as its owner; it is not used until then")
    assert sandbox.requests() == []  # not a single call made with it
    disk.read_only(False)
    connected(*run("tap", config, tmp_path, "--test", env=disk.env))
    assert token_calls(sandbox) == [200] and token_calls(sandbox, "authorization_code") == []
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600


def test_damaged_store_is_one_line_and_the_restored_file_refreshes(sandbox, tap, tmp_path):
    # Truncated files and wrong shapes: test_tokens_hostile.py (same code path, in process).
    store = tmp_path / "tokens.json"
    config = tap(store)
    good = store.read_bytes()
    store.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff" + good[:40])
    os.chmod(store, 0o600)
    expire_access_token(sandbox)
    code, out, err = run("tap", config, tmp_path, "--test")
    line = the_one_line(err, "tap", "is damaged", config)
    assert code == 1 and line == (
        f"token store {store} is damaged (it holds binary data, not text); it was left as it is: restore it from a "
        "backup, or delete it and run `tap-exactonline auth --config <your config.json>`")
    assert token_calls(sandbox) == [] and store.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    store.unlink()
    store.write_bytes(good)  # the user restores the file, readable by others as a plain copy makes it
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o644
    code, out, err = run("tap", config, tmp_path, "--test")
    connected(code, out, err)
    assert token_calls(sandbox) == [200] and token_calls(sandbox, "authorization_code") == []
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert [line for line in err.splitlines() if str(store) in line] == [next(
        line for line in err.splitlines()
        if line.endswith(f"token store {store} was readable by other users (mode 0644); set it to 0600"))]


def test_the_target_says_the_same_in_one_line_and_rejects_nothing(sandbox, disk, tmp_path):
    config = target_config(sandbox, tmp_path, token_store=str(disk.path / "tokens.json"),
                           ledger_path=str(tmp_path / "ledger.sqlite"))
    disk.fill()
    code, out, err = run("target", config, tmp_path, env=disk.env)
    line = the_one_line(err, "target", "No space left on device", config)
    assert code == 1 and line.startswith(f"cannot reserve room for the refreshed tokens in {disk.path}/")
    assert token_calls(sandbox) == [] and out == ""  # no state acknowledged
    assert not (tmp_path / "rejects.jsonl").exists() or (tmp_path / "rejects.jsonl").read_text() == ""
    disk.free()
    code, out, err = run("target", config, tmp_path, env=disk.env)
    assert code == 0, err[-3000:]
    assert token_calls(sandbox) == [200] and len(sandbox.records(sandbox.divisions[0], "crm/Accounts")) > 0
    if disk.mounted:  # (the injected faults of SmallDisk reach only the token store)
        # With the default ledger beside the store, a read-only disk stops the target at the ledger: one line too.
        del config["ledger_path"]
        disk.read_only()
        code, out, err = run("target", config, tmp_path, env=disk.env)
        line = the_one_line(err, "target", "Read-only file system", config, disk.path / "tokens.json")
        assert code == 1 and line == (
            f"cannot create the ledger lock {disk.path}/tokens.target-ledger.sqlite.lock (Read-only file system): "
            f"{disk.path} is on a read-only file system: make it writable or point ledger_path elsewhere")


def test_the_auth_command_refuses_an_unwritable_store_before_the_login(sandbox, disk, tmp_path):
    config = write_auth_config(tmp_path, sandbox, token_store=str(disk.path / "tokens.json"))
    disk.read_only()
    proc = AuthProcess(config, "--paste")
    code, out, err = proc.finish()
    assert code == 1 and TRACEBACK not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("tap-exactonline auth: cannot ") and "(Read-only file system)" in line
    assert "oauth2/auth" not in out  # no login link: no login wasted
    assert token_calls(sandbox, "authorization_code") == []


def test_the_auth_command_replaces_a_damaged_store(sandbox, tmp_path):
    from tests.tokens_support import authorize_by_paste

    store = tmp_path / "tokens.json"
    store.write_bytes(b"\xff\xfe\0garbage")
    config = write_auth_config(tmp_path, sandbox, token_store=str(store))
    code, out, err, auth_code = authorize_by_paste(sandbox, config)
    assert code == 0 and "Tokens saved to file" in out, err
    doc = json.loads(store.read_text())
    assert doc["refresh_token"] and stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert auth_code not in out + err and doc["refresh_token"] not in out + err


def test_a_lock_that_cannot_be_made_is_one_line(sandbox, tap, tmp_path):
    store = tmp_path / "tokens.json"
    config = tap(store)
    lock = tmp_path / "tokens.json.lock"
    lock.unlink()
    lock.mkdir()
    expire_access_token(sandbox)
    code, out, err = run("tap", config, tmp_path, "--test")
    line = the_one_line(err, "tap", "lock", config, store)
    assert code == 1 and line == (f"cannot create the token store lock {lock} (Is a directory): {lock} is a "
                                  "directory: remove it or point token_store elsewhere")
    assert token_calls(sandbox) == []
    lock.rmdir()
    connected(*run("tap", config, tmp_path, "--test"))
    assert token_calls(sandbox) == [200]


def test_a_store_write_failing_after_exact_answered_loses_nothing(sandbox, tap, tmp_path):
    store = tmp_path / "tokens.json"
    recovery = tmp_path / "tokens.json.recovery"
    config = tap(store)
    expire_access_token(sandbox)
    # The rename that would put the new tokens in place fails, every time: the disk broke just then.
    # At DEBUG level, so that the secret check below covers every log line of these paths.
    code, out, err = run("tap", config, tmp_path, "--test",
                         env={FAIL_ENV: "commit:EIO", "TAP_EXACTONLINE_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"})
    connected(code, out, err)  # the run itself goes on with the new tokens
    assert token_calls(sandbox) == [200] and " DEBUG " in err
    assert TRACEBACK not in err and not [s[:10] for s in secrets_in(config, store, recovery) if s in err + out]
    (line,) = [line for line in err.splitlines() if "could not be saved" in line]
    assert f"set aside in {recovery} (mode 0600)" in line and line.endswith(f"mv {recovery} {store}")
    assert stat.S_IMODE(os.stat(recovery).st_mode) == 0o600
    sandbox.reset_log()
    # The next run takes the recovery file over by itself: its access token is still valid.
    connected(*run("tap", config, tmp_path, "--test"))
    assert token_calls(sandbox) == [] and not recovery.exists()
    expire_access_token(sandbox)
    connected(*run("tap", config, tmp_path, "--test"))
    assert token_calls(sandbox) == [200] and token_calls(sandbox, "authorization_code") == []


def test_an_unreachable_postgresql_store_is_one_line(sandbox, tmp_path):
    config = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret, "base_url": sandbox.url,
              "token_store": "postgresql://exact:hunter2secret@127.0.0.1:9/tokens", "divisions": [101]}
    code, out, err = run("tap", config, tmp_path, "--test")
    line = the_one_line(err, "tap", "token store", config)
    assert code == 1 and line.startswith("cannot connect to token store PostgreSQL postgresql://exact:***@127.0.0.1:9/")
    assert line.endswith("(check that the database server is running and reachable from here)")
    assert "hunter2secret" not in err + out
