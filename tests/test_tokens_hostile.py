"""The token store on an unlucky machine, in process (issue #15 items 3-5): damaged files, modes
that let others read, full and read-only disks, locks that cannot be taken, a store write that fails
after Exact already rotated the refresh token. Exact is FakeExact (its token rules in memory); the
programs as a whole are tested in test_tokens_faults.py.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid

import pytest

from exactonline_api.errors import ExactError
from exactonline_api.oauth import TokenManager
from exactonline_api.safefile import FAIL_ENV
from exactonline_api.tokens import FileTokenStore, PostgresTokenStore, TokenStoreError, process_label
from tests.tokens_support import Clock, FakeExact, pg_url, store_with_tokens  # noqa: F401  (pg_url: fixture)

CLIENT = "client-0001"


@pytest.fixture
def world(tmp_path):
    """A store holding a live token pair whose access token is about to expire."""
    clock, fake, store = store_with_tokens(tmp_path / "t.json", CLIENT, lock_timeout=1)
    clock.t += 590
    return clock, fake, store


def manager(store, fake, clock, **kw) -> TokenManager:
    kw.setdefault("sleep", lambda seconds: None)
    return TokenManager(store, fake, now=clock, **kw)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def secrets_of(store: FileTokenStore, fake: FakeExact) -> list[str]:
    values = [fake.live_refresh or ""]
    for path in (store.path, store.recovery_path):
        if path.exists():
            doc = json.loads(path.read_text())
            values += [doc["access_token"], doc["refresh_token"]]
    return [v for v in values if v]


# -- damaged files ----------------------------------------------------------------------------------

DAMAGE = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "it holds binary data, not text"),
    "truncated": (None, "it ends in the middle of the document (truncated)"),
    "empty": (b"", "it is empty"),
    "a list": (b"[1, 2]\n", "it holds a JSON list instead of the token document"),
    "text token": (b'{"refresh_token": 12345, "access_token": "a"}', "its refresh_token is not text"),
    "text time": (b'{"refresh_token": "r", "access_expires_at": "soon"}', "its access_expires_at is not a number"),
    "other format": (b'{"format": "something else"}', "it is not a tap-exactonline token store"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_store_is_refused_in_one_line_and_left_as_it_is(kind, world):
    clock, fake, store = world
    good = store.path.read_bytes()
    data, reason = DAMAGE[kind]
    store.path.write_bytes(good[: len(good) // 2] if data is None else data)
    os.chmod(store.path, 0o600)
    before = store.path.read_bytes()
    with pytest.raises(TokenStoreError) as info:
        manager(store, fake, clock).access_token()
    text = one_line(info.value)
    assert text == (f"token store {store.path} is damaged ({reason}); it was left as it is: restore it from a backup, "
                    "or delete it and run `tap-exactonline auth --config <your config.json>`")
    assert store.path.read_bytes() == before and fake.calls == []
    # Nothing was used up: with the file restored, the chain goes on without a new login.
    store.path.write_bytes(good)
    assert manager(store, fake, clock).access_token() and fake.calls == ["ok"]


def test_a_damaged_store_names_the_recovery_copy_but_does_not_overwrite_itself(world):
    clock, fake, store = world
    store.recovery_path.write_bytes(store.path.read_bytes())
    store.path.write_bytes(b"\0\0\0garbage")
    with pytest.raises(TokenStoreError, match=r"holds tokens an earlier run set aside: if they are the newest, "
                                              r"move it over the store \(`mv .*\.recovery "):
        manager(store, fake, clock).access_token()
    assert store.path.read_bytes() == b"\0\0\0garbage"


# -- modes ------------------------------------------------------------------------------------------


def test_a_store_readable_by_others_is_set_to_0600_on_first_read(world, caplog):
    clock, fake, store = world
    os.chmod(store.path, 0o644)
    with caplog.at_level(logging.WARNING, logger="exactonline_api.tokens"):
        assert store.read() is not None
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert [r.getMessage() for r in caplog.records] == [
        f"token store {store.path} was readable by other users (mode 0644); set it to 0600"]


def test_a_store_readable_by_others_that_cannot_be_fixed_is_not_used(world, monkeypatch):
    clock, fake, store = world
    os.chmod(store.path, 0o640)
    monkeypatch.setenv(FAIL_ENV, "chmod:EPERM")
    with pytest.raises(TokenStoreError) as info:
        manager(store, fake, clock).access_token()
    assert one_line(info.value) == (
        f"token store {store.path} is readable by other users (mode 0640) and its mode cannot be changed "
        f"(Operation not permitted): run `chmod 600 {store.path}` as its owner; it is not used until then")
    assert fake.calls == [] and stat.S_IMODE(os.stat(store.path).st_mode) == 0o640


# -- no room, no permission -------------------------------------------------------------------------


@pytest.mark.parametrize(("errno_name", "says"), [
    ("ENOSPC", "(No space left on device): no space left on the device holding {dir}: free some space"),
    ("EDQUOT", "(Disk quota exceeded): the disk quota for {dir} is used up: free some space"),
    ("EROFS", "(Read-only file system): {dir} is on a read-only file system: make it writable or point "
              "token_store elsewhere"),
    ("EACCES", "(Permission denied): permission denied on {dir}: give this user (uid {uid}) write access or "
               "point token_store elsewhere"),
])
def test_no_room_for_the_answer_means_no_refresh_is_sent(errno_name, says, world, monkeypatch):
    clock, fake, store = world
    before = store.path.read_bytes()
    monkeypatch.setenv(FAIL_ENV, f"reserve:{errno_name}")
    with pytest.raises(TokenStoreError) as info:
        manager(store, fake, clock).access_token()
    detail = says.format(dir=store.path.parent, uid=os.geteuid())
    assert one_line(info.value) == (f"cannot reserve room for the refreshed tokens in {store.pending_path} {detail}; "
                                    "nothing was sent to Exact, the stored tokens are unchanged")
    assert fake.calls == [] and store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["t.json", "t.json.lock"]
    monkeypatch.delenv(FAIL_ENV)
    assert manager(store, fake, clock).access_token() and fake.calls == ["ok"]


def test_the_reservation_becomes_the_store(world):
    clock, fake, store = world
    tm = manager(store, fake, clock)
    reserved = []
    real_reserve = store._reservation.reserve.__func__

    def spy(self, size):
        real_reserve(self, size)
        info = os.stat(self.pending)
        assert stat.S_IMODE(info.st_mode) == 0o600  # private before anything is in it
        reserved.append((size, info.st_size, info.st_ino))

    import exactonline_api.safefile as safefile

    safefile.Reservation.reserve = spy
    try:
        token = tm.access_token()
    finally:
        safefile.Reservation.reserve = real_reserve
    (size, on_disk, inode), = reserved
    assert size == on_disk >= 4096 and size >= 2 * len(store.path.read_bytes())
    assert os.stat(store.path).st_ino == inode  # the reserved blocks now hold the store
    assert store.read().access_token == token


# -- the lock ---------------------------------------------------------------------------------------


def test_a_lock_file_that_cannot_be_created_is_one_line(world):
    clock, fake, store = world
    store.lock_path.unlink()
    store.lock_path.mkdir()
    with pytest.raises(TokenStoreError) as info:
        manager(store, fake, clock).access_token()
    assert one_line(info.value) == (f"cannot create the token store lock {store.lock_path} (Is a directory): "
                                    f"{store.lock_path} is a directory: remove it or point token_store elsewhere")
    assert fake.calls == []


def test_a_lock_held_elsewhere_times_out_in_one_line(world):
    import fcntl

    clock, fake, store = world
    store.lock_timeout = 0.2
    fd = os.open(store.lock_path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: excludes us like another process
    try:
        with pytest.raises(TokenStoreError) as info:
            manager(store, fake, clock).access_token()
    finally:
        os.close(fd)
    # The note of the last holder names it (here: the fixture, this process, which wrote the store).
    assert one_line(info.value).startswith(f"waited 0 s for the token store lock {store.lock_path}; another process "
                                           f"holds it ({process_label()} since ")
    assert one_line(info.value).endswith("Z): stop it and try again")
    assert fake.calls == []


# -- Exact answered, the store will not take it ----------------------------------------------------


def test_new_tokens_the_store_refuses_are_retried_set_aside_and_taken_over_next_run(world, monkeypatch, caplog):
    clock, fake, store = world
    old = store.path.read_bytes()
    sleeps: list[float] = []
    monkeypatch.setenv(FAIL_ENV, "commit:EIO")
    tm = manager(store, fake, clock, sleep=sleeps.append)
    with caplog.at_level(logging.WARNING):
        token = tm.access_token()
    # Used for the rest of this run, without asking Exact again.
    assert fake.calls == ["ok"] and tm.access_token() == token and sleeps == [0.2, 1.0]
    # The store still holds the old pair (and the refresh mark): never a half-written state.
    assert store.read().refresh_token == json.loads(old)["refresh_token"] and store.read().interrupted_refresh
    assert stat.S_IMODE(os.stat(store.recovery_path).st_mode) == 0o600
    assert json.loads(store.recovery_path.read_text())["access_token"] == token
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("Exact issued new tokens but they could not be saved (cannot write token store "
                              f"{store.path} (Input/output error): the device holding {store.path.parent} reported "
                              f"an I/O error: check the disk); they are set aside in {store.recovery_path} (mode "
                              "0600) and used for the rest of this run.")
    assert message.endswith(f"to restore them by hand: mv {store.recovery_path} {store.path}")
    assert not any(secret in message for secret in secrets_of(store, fake))

    # The next run: the store is writable again and takes the recovery copy over by itself.
    monkeypatch.delenv(FAIL_ENV)
    caplog.clear()
    nxt = manager(FileTokenStore(store.path, client_id=CLIENT), fake, clock)
    clock.t += 10
    assert nxt.access_token_after_401("a token the server refused") == token
    assert store.read().access_token == token and not store.recovery_path.exists()
    assert fake.calls == ["ok"]
    clock.t += 600
    assert nxt.access_token() != token and fake.calls == ["ok", "ok"]  # the chain lives on


def test_a_store_still_unwritable_next_run_uses_the_copy_and_refuses_to_refresh(world, monkeypatch):
    clock, fake, store = world
    monkeypatch.setenv(FAIL_ENV, "commit:EROFS")
    token = manager(store, fake, clock).access_token()
    monkeypatch.setenv(FAIL_ENV, "reserve:EROFS,replace:EROFS")
    nxt = manager(FileTokenStore(store.path, client_id=CLIENT), fake, clock)
    assert nxt.access_token_after_401("refused") == token  # still valid: the run goes on
    clock.t += 600
    with pytest.raises(TokenStoreError, match="Read-only file system.*nothing was sent to Exact"):
        nxt.access_token()
    assert fake.calls == ["ok"] and store.recovery_path.exists()


def test_new_tokens_nowhere_to_put_live_in_memory_and_say_so(world, monkeypatch, caplog):
    clock, fake, store = world
    monkeypatch.setenv(FAIL_ENV, "fill:EIO")
    store.recovery_path.mkdir()  # not even the recovery file can be written
    tm = manager(store, fake, clock)
    with caplog.at_level(logging.WARNING):
        token = tm.access_token()
    assert tm.access_token() == token and fake.calls == ["ok"]
    (record,) = caplog.records
    assert record.levelname == "ERROR" and "they live only in this process" in record.getMessage()
    # Later in the same run the disk works again: the next refresh starts from the in-memory pair.
    monkeypatch.delenv(FAIL_ENV)
    clock.t += 600
    assert tm.access_token() != token and fake.calls == ["ok", "ok"]
    assert store.read().access_token == tm.access_token()


def test_errors_of_the_store_are_exact_errors():
    # run_plugin and the auth command turn ExactError into one line and exit 1.
    assert issubclass(TokenStoreError, ExactError)


# -- PostgreSQL -------------------------------------------------------------------------------------


def _admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_postgresql_store_without_rights_is_one_line(pg_url):  # noqa: F811
    admin_store = PostgresTokenStore(pg_url, client_id=CLIENT)
    admin_store.read()  # the tables are made by the admin
    admin_store.close()
    role = f"exact_norights_{uuid.uuid4().hex[:8]}"
    with _admin(pg_url) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        url = pg_url.replace("//postgres@", f"//{role}@")
        store = PostgresTokenStore(url, client_id=CLIENT)
        with pytest.raises(TokenStoreError) as info:
            store.read()
        store.close()
        assert one_line(info.value) == (
            f"cannot read token store {store.describe()}: permission denied for table exactonline_tokens (grant "
            "SELECT, INSERT, UPDATE, DELETE on exactonline_tokens and exactonline_token_refreshes to this database "
            "user)")
    finally:
        with _admin(pg_url) as admin:
            admin.execute(f'DROP ROLE "{role}"')


def test_postgresql_row_that_cannot_take_the_answer_stops_the_refresh_before_it_is_sent(pg_url):  # noqa: F811
    # Tables made by hand with columns too small for Exact's tokens (ours are short enough to fit).
    with _admin(pg_url) as admin:
        admin.execute("CREATE TABLE exactonline_tokens (client_id text PRIMARY KEY, access_token varchar(64), "
                      "access_expires_at double precision, refresh_token varchar(64), issued_at double precision, "
                      "updated_at timestamptz NOT NULL DEFAULT now())")
    clock = Clock()
    fake = FakeExact(clock=clock)
    store = PostgresTokenStore(pg_url, client_id=CLIENT, lock_timeout=5)
    with store.locked():
        store.write(fake.mint())
    before = store.read()
    clock.t += 590
    with pytest.raises(TokenStoreError) as info:
        manager(store, fake, clock).access_token()
    assert one_line(info.value) == (
        f"cannot write token store {store.describe()}: value too long for type character varying(64); nothing was "
        "sent to Exact, the stored tokens are unchanged")
    assert fake.calls == [] and store.read() == before and not store.read().interrupted_refresh
    store.close()


@pytest.fixture
def pg_world(pg_url, tmp_path, monkeypatch):  # noqa: F811
    """Like ``world`` on a PostgreSQL store; the working directory (where its recovery file goes) is tmp_path."""
    monkeypatch.chdir(tmp_path)
    clock = Clock()
    fake = FakeExact(clock=clock)
    store = PostgresTokenStore(pg_url, client_id=CLIENT, lock_timeout=5)
    with store.locked():
        store.write(fake.mint())
    yield clock, fake, store
    store.close()


def test_postgresql_connection_lost_after_the_answer_sets_the_tokens_aside(pg_world, pg_url, tmp_path,  # noqa: F811
                                                                           monkeypatch, caplog):
    clock, fake, store = pg_world
    clock.t += 590
    answer = fake.refresh

    def answer_then_cut(token):
        issued = answer(token)
        with _admin(pg_url) as admin:  # the database restarts just as Exact answers
            admin.execute("SELECT pg_terminate_backend(%s)", (store._held.conn.info.backend_pid,))
        return issued

    monkeypatch.setattr(fake, "refresh", answer_then_cut)
    with caplog.at_level(logging.WARNING):
        token = manager(store, fake, clock).access_token()
    recovery = tmp_path / ".tokens" / "exactonline-client00.token.json.recovery"
    assert fake.calls == ["ok"] and stat.S_IMODE(os.stat(recovery).st_mode) == 0o600
    assert json.loads(recovery.read_text())["access_token"] == token
    saved = [r.getMessage() for r in caplog.records if "could not be saved" in r.getMessage()]
    assert len(saved) == 1 and f"set aside in {recovery}" in saved[0] and token not in saved[0]
    # The next run (same working directory) takes them over into the row under the lock.
    monkeypatch.setattr(fake, "refresh", answer)
    nxt_store = PostgresTokenStore(pg_url, client_id=CLIENT, lock_timeout=5)
    nxt = manager(nxt_store, fake, clock)
    assert nxt.access_token_after_401("a token the server refused") == token
    assert nxt_store.read().access_token == token and not recovery.exists()
    clock.t += 600
    assert nxt.access_token() != token and fake.calls == ["ok", "ok"]
    nxt_store.close()


def test_waiting_for_a_lock_follows_the_injected_clock_and_gives_up_at_the_deadline(tmp_path):
    import fcntl

    from exactonline_api.filelock import wait_for_flock

    path = tmp_path / "x.lock"
    held, mine = os.open(path, os.O_RDWR | os.O_CREAT), os.open(path, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    try:
        assert wait_for_flock(mine, 1.0, clock=lambda: now[0], sleep=sleep) is False
        assert now[0] == pytest.approx(1.0) and slept[:3] == [0.005, 0.01, 0.02] and max(slept) == 0.1
        assert slept[-1] == pytest.approx(0.045)  # never past the deadline
        before = len(slept)
        assert wait_for_flock(mine, 0, clock=lambda: now[0], sleep=sleep) is False and len(slept) == before
        fcntl.flock(held, fcntl.LOCK_UN)
        assert wait_for_flock(mine, 0, clock=lambda: now[0], sleep=sleep) is True
    finally:
        os.close(held)
        os.close(mine)


def test_a_store_that_is_a_symbolic_link_is_refused(world):
    clock, fake, store = world
    real = store.path.with_name("real.json")
    store.path.rename(real)
    store.path.symlink_to(real)
    with pytest.raises(TokenStoreError) as info:
        manager(store, fake, clock).access_token()
    assert one_line(info.value) == f"token store {store.path} is a symbolic link: point token_store at the file itself"
    assert store.path.is_symlink() and fake.calls == []


def test_postgresql_refusing_the_new_row_leaks_no_token(pg_world, pg_url, tmp_path, caplog):  # noqa: F811
    # PostgreSQL puts the failing row, tokens included, in the DETAIL of a CHECK violation.
    clock, fake, store = pg_world
    with _admin(pg_url) as admin:
        admin.execute("ALTER TABLE exactonline_tokens ADD CONSTRAINT no_second_pair "
                      "CHECK (refresh_token NOT LIKE 'fake-refresh-0002%')")
    clock.t += 590
    with caplog.at_level(logging.DEBUG):
        token = manager(store, fake, clock).access_token()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert 'violates check constraint "no_second_pair"' in text
    assert fake.live_refresh not in text and token not in text and "fake-refresh-0002" not in text
    recovery = tmp_path / ".tokens" / "exactonline-client00.token.json.recovery"
    assert json.loads(recovery.read_text())["refresh_token"] == fake.live_refresh
    # The next run uses the copy while the row still refuses it, and keeps the copy.
    nxt_store = PostgresTokenStore(pg_url, client_id=CLIENT, lock_timeout=5)
    assert manager(nxt_store, fake, clock).access_token_after_401("refused") == token and recovery.exists()
    nxt_store.close()


def test_a_store_path_through_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    store = FileTokenStore(tmp_path / "afile" / "tokens.json", client_id=CLIENT)
    with pytest.raises(TokenStoreError) as info:
        store.read()
    assert one_line(info.value) == (
        f"cannot read token store {store.path} (Not a directory): a part of {store.path.parent} is a file, not a "
        "directory: point token_store elsewhere")
    with pytest.raises(TokenStoreError, match=r"^cannot create the token store lock .*\(Not a directory\)"):
        with store.locked():
            pass


def test_room_for_the_answer_but_not_for_the_refresh_mark_sends_nothing(world, monkeypatch):
    clock, fake, store = world
    before = store.path.read_bytes()
    monkeypatch.setenv(FAIL_ENV, "replace:ENOSPC")  # the reservation took the last free blocks
    with pytest.raises(TokenStoreError, match=r"^cannot write token store .*\(No space left on device\)"):
        manager(store, fake, clock).access_token()
    assert fake.calls == [] and store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["t.json", "t.json.lock"]


def test_a_login_whose_save_fails_is_set_aside_and_taken_over(world, monkeypatch):
    clock, fake, store = world
    store.path.write_bytes(b"\xff damaged")  # a login replaces even a damaged store
    monkeypatch.setenv(FAIL_ENV, "commit:EIO")
    tm = manager(store, fake, clock)
    assert tm.save_login(fake.mint) is False
    login = json.loads(store.recovery_path.read_text())
    assert store.path.read_bytes() == b"\xff damaged" and tm.access_token() == login["access_token"]
    monkeypatch.delenv(FAIL_ENV)
    with pytest.raises(TokenStoreError, match="is damaged"):  # never overwritten without a login
        manager(FileTokenStore(store.path, client_id=CLIENT), fake, clock).access_token()
    assert manager(store, fake, clock).save_login(fake.mint) is True and not store.recovery_path.exists()


def test_planted_links_beside_the_store_are_never_followed(world, tmp_path, monkeypatch):
    clock, fake, store = world
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    store.lock_path.unlink()
    store.lock_path.symlink_to(victim)
    with pytest.raises(TokenStoreError) as info:
        manager(store, fake, clock).access_token()
    assert one_line(info.value) == (f"cannot create the token store lock {store.lock_path} (Too many levels of "
                                    f"symbolic links): {store.lock_path} is a symbolic link: remove it (it is made "
                                    "again as a plain file)")
    store.lock_path.unlink()
    answer = fake.refresh

    def answer_while_a_link_is_planted(token):
        store.recovery_path.symlink_to(victim)  # where the tokens would go if the store write fails
        return answer(token)

    monkeypatch.setattr(fake, "refresh", answer_while_a_link_is_planted)
    monkeypatch.setenv(FAIL_ENV, "fill:EIO")
    manager(store, fake, clock).access_token()
    assert victim.read_text() == "precious" and fake.calls == ["ok"] and store.recovery_path.is_symlink()
