"""Token store backends: format, atomicity, permissions, locking, refresh marks."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time

import pytest

from exactonline_api.errors import ConfigError, ExactError
from exactonline_api.tokens import (
    FileTokenStore,
    PostgresTokenStore,
    TokenSet,
    default_store_path,
    open_token_store,
)
from tests.tokens_support import pg_url  # noqa: F401  (fixture)

CLIENT = "3f2a9c1e-0000-4000-8000-000000000001"


def tokens(n: int = 1, *, at: float | None = None) -> TokenSet:
    at = time.time() if at is None else at
    return TokenSet(f"access-{n}-xxxxxxxx", at + 600, f"refresh-{n}-yyyyyyyy", at)


@pytest.fixture(params=["file", "postgres"])
def store(request, tmp_path):
    if request.param == "file":
        yield FileTokenStore(tmp_path / "t.json", client_id=CLIENT, lock_timeout=1)
        return
    url = request.getfixturevalue("pg_url")
    s = PostgresTokenStore(url, client_id=CLIENT, lock_timeout=1)
    yield s
    s.close()


# -- open_token_store -------------------------------------------------------------------------------


def test_default_store_is_a_file_under_dot_tokens_named_after_the_client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = open_token_store(None, client_id=CLIENT)
    assert isinstance(s, FileTokenStore)
    assert s.path == default_store_path(CLIENT)
    assert str(s.path) == ".tokens/exactonline-3f2a9c1e.token.json"
    with s.locked():
        s.write(tokens())
    assert stat.S_IMODE(os.stat(tmp_path / ".tokens").st_mode) == 0o700


def test_spec_dispatch(tmp_path):
    assert isinstance(open_token_store(str(tmp_path / "x.json"), client_id=CLIENT), FileTokenStore)
    in_dir = open_token_store(str(tmp_path), client_id=CLIENT)
    assert in_dir.path == tmp_path / "exactonline-3f2a9c1e.token.json"
    pg = open_token_store("postgresql://u:hunter2secret@db.example/x", client_id=CLIENT)
    assert isinstance(pg, PostgresTokenStore)
    assert "hunter2secret" not in pg.describe() and "db.example" in pg.describe()
    with pytest.raises(ConfigError, match="not supported"):
        open_token_store("s3://bucket/key", client_id=CLIENT)
    with pytest.raises(ConfigError, match="client_id"):
        open_token_store(None, client_id="")


def test_missing_psycopg_gives_a_clear_config_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(ConfigError, match=r"pip install 'tap-exactonline\[postgres\]'"):
        open_token_store("postgresql://localhost/x", client_id=CLIENT)


# -- both backends ----------------------------------------------------------------------------------


def test_empty_store_reads_none_and_round_trips(store):
    assert store.read() is None
    with store.locked() as current:
        assert current is None
        store.write(tokens(1, at=1000.0))
    got = store.read()
    assert got == tokens(1, at=1000.0)
    assert got.access_expires_at == 1600.0 and got.issued_at == 1000.0
    assert not got.interrupted_refresh


def test_write_outside_the_lock_is_a_programming_error(store):
    with pytest.raises(RuntimeError, match="inside locked"):
        store.write(tokens())
    with pytest.raises(RuntimeError, match="inside locked"):
        store.mark_refresh_started("me")


def test_exception_inside_locked_keeps_the_previous_tokens(store):
    with store.locked():
        store.write(tokens(1))
    with pytest.raises(ZeroDivisionError):
        with store.locked():
            if isinstance(store, PostgresTokenStore):
                store.write(tokens(2))  # part of the transaction that the exception rolls back
            raise ZeroDivisionError
    assert store.read().refresh_token == "refresh-1-yyyyyyyy"


def test_refresh_mark_is_durable_at_once_and_stale_after_a_newer_write(store):
    with store.locked():
        store.write(tokens(1, at=time.time() - 10))
    with store.locked():
        store.mark_refresh_started("host pid 1")
        # Visible to other readers while the lock is still held: that is the point of the mark.
        seen = type(store)(store.path if isinstance(store, FileTokenStore) else store.url, client_id=CLIENT).read()
        assert seen.interrupted_refresh and seen.refresh_started_by == "host pid 1"
    assert store.read().interrupted_refresh
    with store.locked():
        store.write(tokens(2))
    assert not store.read().interrupted_refresh
    with store.locked():
        store.mark_refresh_started("host pid 2")
        store.clear_refresh_mark()
    assert store.read().refresh_started_at is None


def test_clearing_a_mark_restores_the_store_exactly(store):
    with store.locked():
        store.mark_refresh_started("dead pid 1")  # on an empty store (seeding)
        store.clear_refresh_mark()
    assert store.read() is None
    if isinstance(store, FileTokenStore):
        assert not store.path.exists()
    with store.locked():
        store.write(tokens(1, at=time.time() - 10))
    with store.locked():
        store.mark_refresh_started("dead pid 1")  # left behind by a killed process
    before = store.path.read_bytes() if isinstance(store, FileTokenStore) else None
    with store.locked():
        store.mark_refresh_started("live pid 2")
        assert store.read().refresh_started_by == "live pid 2"
        store.clear_refresh_mark()
    assert store.read().refresh_started_by == "dead pid 1"
    if before is not None:
        assert store.path.read_bytes() == before


def _hold_lock(kind: str, where: str, ready, release) -> None:
    s = (FileTokenStore(where, client_id=CLIENT) if kind == "file"
         else PostgresTokenStore(where, client_id=CLIENT))
    with s.locked():
        ready.set()
        release.wait(10)


def test_lock_excludes_other_processes_and_times_out_clearly(store):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    kind = "file" if isinstance(store, FileTokenStore) else "postgres"
    where = str(store.path) if kind == "file" else store.url
    holder = ctx.Process(target=_hold_lock, args=(kind, where, ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        started = time.monotonic()
        with pytest.raises(ExactError, match="waited 1 s for the token"):
            with store.locked():
                pass
        assert time.monotonic() - started >= 0.9  # it waited its lock_timeout (an upper bound would be a race)
    finally:
        release.set()
        holder.join(10)
    with store.locked():  # released when the holder is done
        pass


def test_lock_is_released_when_the_holder_is_killed(store):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    kind = "file" if isinstance(store, FileTokenStore) else "postgres"
    where = str(store.path) if kind == "file" else store.url
    holder = ctx.Process(target=_hold_lock, args=(kind, where, ready, release))
    holder.start()
    assert ready.wait(20)
    holder.kill()
    holder.join(10)
    store.lock_timeout = 10  # a lock left behind by the killed holder would raise after this
    with store.locked():
        pass


# -- file backend specifics -------------------------------------------------------------------------


def test_file_is_private_atomic_and_leaves_no_temp_files(tmp_path):
    s = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    os.umask(0o022)
    for n in range(3):
        with s.locked():
            s.write(tokens(n))
    assert stat.S_IMODE(os.stat(tmp_path / "t.json").st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.json.lock"]
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["client_id"] == CLIENT and doc["refresh_token"] == "refresh-2-yyyyyyyy"


def test_stale_temp_file_from_a_killed_writer_is_removed_and_ignored(tmp_path):
    s = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    with s.locked():
        s.write(tokens(1))
    (tmp_path / ".t.json.999.1.tmp").write_text('{"access_tok')
    assert s.read().refresh_token == "refresh-1-yyyyyyyy"
    with s.locked():
        pass
    assert not (tmp_path / ".t.json.999.1.tmp").exists()


def test_store_of_another_client_is_refused(tmp_path):
    s = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    with s.locked():
        s.write(tokens())
    with pytest.raises(ConfigError, match="own token_store"):
        FileTokenStore(tmp_path / "t.json", client_id="other-client-id").read()


def test_hand_broken_file_gives_one_clear_line(tmp_path):
    (tmp_path / "t.json").write_text('{"access_token": not json}')
    with pytest.raises(ExactError, match=r"is damaged \(it is not valid JSON\); it was left as it is") as info:
        FileTokenStore(tmp_path / "t.json", client_id=CLIENT).read()
    assert "\n" not in str(info.value)


def test_locked_is_not_reentrant(tmp_path):
    s = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    with s.locked():
        with pytest.raises(RuntimeError, match="re-entrant"):
            with s.locked():
                pass


def test_tokenset_repr_hides_tokens():
    text = repr(tokens(7))
    assert "access-7" not in text and "refresh-7" not in text and "access_expires_at" in text
