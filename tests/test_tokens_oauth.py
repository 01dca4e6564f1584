"""OAuthClient answer handling and the TokenManager protocol, without the sandbox."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qs

import pytest
import requests
from requests.adapters import BaseAdapter

from exactonline_api.errors import (
    AuthorizationCodeRejected,
    ConfigError,
    ExactError,
    InvalidGrant,
    OldRefreshTokenUsed,
    ReauthorizationRequired,
    RefreshTokenExpired,
    RefreshTooEarly,
    TokenEndpointError,
)
from exactonline_api.oauth import OAuthClient, TokenManager
from exactonline_api.tokens import FileTokenStore, TokenSet
from tests.tokens_support import Clock, FakeExact, store_with_tokens

CLIENT = "client-0001"
SECRET = "client-secret-for-unit-tests"


class StubAdapter(BaseAdapter):
    """Answers every request with the next canned (status, body, headers) or raises it."""

    def __init__(self, *answers):
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = (answer + ({},))[:3] if len(answer) == 2 else answer
        response = requests.Response()
        response.status_code = status
        response._content = (json.dumps(body) if not isinstance(body, (str, bytes)) else body).encode() \
            if not isinstance(body, bytes) else body
        response.headers.update(headers)
        response.request = request
        response.url = request.url
        response.connection = self  # as HTTPAdapter.build_response does; auth hooks resend through it
        return response

    def close(self):
        pass


def client(*answers) -> tuple[OAuthClient, StubAdapter]:
    adapter = StubAdapter(*answers)
    session = requests.Session()
    session.mount("https://", adapter)
    return OAuthClient("https://start.exactonline.nl/", CLIENT, SECRET, session=session), adapter


# -- OAuthClient ------------------------------------------------------------------------------------


def test_refresh_posts_the_form_and_reads_expires_in_as_a_string():
    oauth, adapter = client((200, {"access_token": "new-access-aaaaaaaa", "token_type": "bearer",
                                   "expires_in": "600", "refresh_token": "new-refresh-bbbbbbbb"}))
    before = time.time()
    got = oauth.refresh("old-refresh-cccccccc")
    assert got.access_token == "new-access-aaaaaaaa" and got.refresh_token == "new-refresh-bbbbbbbb"
    assert before + 600 <= got.access_expires_at <= time.time() + 600
    assert got.lifetime == pytest.approx(600)
    (sent,) = adapter.sent
    assert sent.url == "https://start.exactonline.nl/api/oauth2/token"
    assert parse_qs(sent.body) == {"grant_type": ["refresh_token"], "refresh_token": ["old-refresh-cccccccc"],
                                   "client_id": [CLIENT], "client_secret": [SECRET]}


def test_authorization_url_carries_state_and_redirect():
    oauth, _ = client()
    url = oauth.authorization_url("https://example.com/callback", "st4te")
    assert url.startswith("https://start.exactonline.nl/api/oauth2/auth?")
    assert parse_qs(url.split("?", 1)[1]) == {"client_id": [CLIENT], "redirect_uri": ["https://example.com/callback"],
                                              "response_type": ["code"], "state": ["st4te"]}


@pytest.mark.parametrize(("status", "body", "headers", "expected"), [
    (401, {"error": "unauthorized_client", "error_description": "Old refresh token used."}, {}, OldRefreshTokenUsed),
    (400, {"error": "access_denied", "error_description": "Rate limit exceeded: access_token not expired"},
     {"Reason": "TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired"}, RefreshTooEarly),
    (401, "<html>Access Token not expired</html>", {}, RefreshTooEarly),
    (400, {"error": "invalid_request", "error_description":
           "The refresh token expired at 10/11/2022 9:18:20 PM and it is now 10/28/2022 4:15:50 PM."}, {},
     RefreshTokenExpired),
    (400, {"error": "invalid_grant", "error_description": "Token is not allowed, because of invalid or empty chainId"},
     {"Reason": "Unknown: Token is not allowed, because of invalid or empty chainId"}, InvalidGrant),
    (400, {"error": "invalid_request"}, {}, InvalidGrant),
    (400, {"error": "invalid_client"}, {}, ConfigError),
    (503, "", {}, TokenEndpointError),
    (400, {"error": "access_denied", "error_description": "Rate limit exceeded: too many token requests today"},
     {"Reason": "TooManyTokenRequests: Rate limit exceeded"}, TokenEndpointError),
])
def test_refresh_errors_are_typed(status, body, headers, expected):
    oauth, _ = client((status, body, headers))
    with pytest.raises(expected) as info:
        oauth.refresh("old-refresh-dddddddd")
    assert "old-refresh-dddddddd" not in str(info.value) and SECRET not in str(info.value)
    if expected is RefreshTokenExpired:
        assert isinstance(info.value, ReauthorizationRequired) and "tap-exactonline auth" in str(info.value)


def test_server_echoing_a_token_does_not_leak_it():
    oauth, _ = client((400, {"error": "invalid_grant", "error_description": "token old-refresh-eeeeeeee is bad"}))
    with pytest.raises(InvalidGrant) as info:
        oauth.refresh("old-refresh-eeeeeeee")
    assert "old-refresh-eeeeeeee" not in str(info.value) and "***" in str(info.value)


def test_transport_errors_say_whether_exact_may_have_processed_the_refresh():
    refused = requests.exceptions.ConnectionError("HTTPSConnectionPool: NewConnectionError: Connection refused")
    oauth, _ = client(refused, requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(TokenEndpointError) as first:
        oauth.refresh("old-refresh-ffffffff")
    assert not first.value.outcome_unknown
    with pytest.raises(TokenEndpointError) as second:
        oauth.refresh("old-refresh-ffffffff")
    assert second.value.outcome_unknown and "may have processed" in str(second.value)


def test_http_200_without_tokens_is_an_unknown_outcome():
    oauth, _ = client((200, {"access_token": "only-access-gggggggg"}))
    with pytest.raises(TokenEndpointError) as info:
        oauth.refresh("old-refresh-gggggggg")
    assert info.value.outcome_unknown


def test_exchange_code_decodes_the_bang_and_explains_a_rejection():
    ok = (200, {"access_token": "acc-hhhhhhhh", "expires_in": "600", "refresh_token": "ref-hhhhhhhh"})
    bad = (400, {"error": "invalid_request"})
    oauth, adapter = client(ok, bad)
    oauth.exchange_code("XTzM%21IAAAcode", "https://example.com/callback")
    assert parse_qs(adapter.sent[0].body)["code"] == ["XTzM!IAAAcode"]
    with pytest.raises(AuthorizationCodeRejected) as info:
        oauth.exchange_code("XTzM!IAAAcode", "https://example.com/callback")
    message = str(info.value)
    assert "3 minutes" in message and "https://example.com/callback" in message and "IAAAcode" not in message


# -- TokenManager -----------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    return store_with_tokens(tmp_path / "t.json", CLIENT)


def manager(store, fake, clock, **kw) -> TokenManager:
    return TokenManager(store, fake, now=clock, **kw)


def test_valid_token_is_used_without_refreshing(world):
    clock, fake, store = world
    tm = manager(store, fake, clock)
    first = tm.access_token()
    clock.t += 500
    assert tm.access_token() == first and fake.calls == [] and tm.refresh_count == 0


def test_token_near_expiry_is_refreshed_once_and_saved_before_use(world):
    clock, fake, store = world
    tm = manager(store, fake, clock)
    old = tm.access_token()
    clock.t += 571  # inside the last 30 s
    new = tm.access_token()
    assert new != old and fake.calls == ["ok"] and tm.refresh_count == 1
    assert store.read().access_token == new and not store.read().interrupted_refresh
    assert tm.access_token() == new and fake.calls == ["ok"]


def test_margin_is_capped_to_exacts_refresh_window(tmp_path):
    clock = Clock()
    fake = FakeExact(clock=clock, lifetime=4, too_early=3.8)
    store = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    with store.locked():
        store.write(fake.mint())
    tm = manager(store, fake, clock, margin_seconds=30)
    tm.access_token()
    clock.t += 3.7
    tm.access_token()
    assert fake.calls == []
    clock.t += 0.15
    tm.access_token()
    assert fake.calls == ["ok"]


def test_two_processes_worth_of_managers_refresh_once(world):
    clock, fake, store = world
    fake.delay = 0.05  # widen the race
    managers = [manager(FileTokenStore(store.path, client_id=CLIENT), fake, clock) for _ in range(4)]
    for tm in managers:
        tm.access_token()
    clock.t += 590
    results: list[str] = []
    threads = [threading.Thread(target=lambda tm=tm: results.extend(tm.access_token() for _ in range(3)))
               for tm in managers for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert fake.calls == ["ok"]
    assert len(set(results)) == 1 and len(results) == 36
    assert sum(tm.refresh_count for tm in managers) == 1


def test_after_401_uses_a_token_someone_else_stored(world):
    clock, fake, store = world
    tm_a, tm_b = manager(store, fake, clock), manager(FileTokenStore(store.path, client_id=CLIENT), fake, clock)
    old = tm_a.access_token()
    tm_b.access_token()
    clock.t += 590
    new = tm_b.access_token()
    assert tm_a.access_token_after_401(old) == new and fake.calls == ["ok"]


def test_a_young_token_rejected_by_exact_does_not_ask_for_a_login(world):
    clock, fake, store = world
    tm = manager(store, fake, clock)
    token = tm.access_token()
    before = (store.path.read_bytes())
    with pytest.raises(ExactError, match="rejected the current one; the refresh token is still valid") as info:
        tm.access_token_after_401(token)
    assert not isinstance(info.value, ReauthorizationRequired) and fake.calls == ["early"]
    assert store.read() == TokenSet(**{k: v for k, v in json.loads(before).items()
                                       if k in ("access_token", "access_expires_at", "refresh_token", "issued_at")})
    assert not store.read().interrupted_refresh


def test_too_early_after_a_proactive_refresh_keeps_the_stored_token(world):
    # This machine's clock runs ahead: by its reckoning the token is due, by Exact's it is not.
    clock, fake, store = world
    tm = manager(store, fake, clock)
    token = tm.access_token()
    fake.last_issue += 60
    clock.t += 590
    assert tm.access_token() == token and fake.calls == ["early"]
    clock.t += 30  # still inside the hold: Exact is not asked again
    assert tm.access_token() == token and fake.calls == ["early"]
    clock.t += 31
    assert tm.access_token() != token and fake.calls == ["early", "ok"]
    assert store.read().access_token == tm.access_token()


def test_a_fresh_seed_refused_as_too_early_is_not_a_dead_token(tmp_path):
    fake = FakeExact()
    seed = fake.mint().refresh_token  # the user just got it (and an access token) elsewhere
    store = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    with pytest.raises(ExactError, match="refresh token is still valid: run again in 10 minutes") as info:
        TokenManager(store, fake, seed_refresh_token=seed).access_token()
    assert not isinstance(info.value, ReauthorizationRequired)
    assert fake.live_refresh == seed


def _core(store):
    doc = json.loads(store.path.read_text())
    return {k: doc[k] for k in ("access_token", "access_expires_at", "refresh_token", "issued_at",
                                "refresh_started_at")}


def test_refresh_by_an_outsider_is_final_and_leaves_the_store_alone(world):
    clock, fake, store = world
    tm = manager(store, fake, clock)
    tm.access_token()
    clock.t += 600
    fake.refresh(store.read().refresh_token)  # someone with a copy of the token, not using the store
    before = _core(store)
    clock.t += 600
    with pytest.raises(ReauthorizationRequired) as info:
        tm.access_token()
    message = str(info.value)
    assert "already used" in message and "does not share this token store" in message
    assert "tap-exactonline auth" in message and "\n" not in message
    assert _core(store) == before
    assert fake.calls == ["ok", "old"]  # one try, no blind retry


def test_interrupted_refresh_is_named_in_the_message(world):
    clock, fake, store = world
    tm = manager(store, fake, clock)
    clock.t += 600
    with store.locked():
        store.mark_refresh_started("otherhost pid 42")
    fake.refresh(store.read().refresh_token)  # what the killed process achieved at Exact
    clock.t += 600
    with pytest.raises(ReauthorizationRequired, match="otherhost pid 42 never saved its result"):
        tm.access_token()
    # The store is exactly as it was, mark included: the next run gives the same explanation.
    assert store.read().refresh_started_by == "otherhost pid 42"
    with pytest.raises(ReauthorizationRequired, match="otherhost pid 42 never saved its result"):
        manager(store, fake, clock).access_token()


def test_revoked_or_expired_refresh_token_is_final(world):
    clock, fake, store = world
    fake.revoked = True
    tm = manager(store, fake, clock)
    clock.t += 600
    before = _core(store)
    with pytest.raises(ReauthorizationRequired, match="no longer accepts"):
        tm.access_token()
    assert _core(store) == before


def test_unknown_outcome_keeps_the_mark_for_the_next_process(world):
    clock, fake, store = world
    clock.t += 600

    class Flaky:
        base_url = fake.base_url

        def refresh(self, token):
            fake.refresh(token)  # Exact did rotate...
            raise TokenEndpointError("no answer", outcome_unknown=True)  # ...but we never saw it

    with pytest.raises(TokenEndpointError, match="may now be used up"):
        manager(store, Flaky(), clock).access_token()
    assert store.read().interrupted_refresh
    with pytest.raises(ReauthorizationRequired, match="never saved its result"):
        manager(store, fake, clock).access_token()


def test_seed_fills_an_empty_store_and_is_ignored_afterwards(tmp_path):
    clock = Clock()
    fake = FakeExact(clock=clock)
    seed = fake.mint().refresh_token
    clock.t += 600
    store = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    tm = manager(store, fake, clock, seed_refresh_token=seed)
    token = tm.access_token()
    assert store.read().access_token == token and fake.calls == ["ok"]
    clock.t += 600
    tm2 = manager(store, fake, clock, seed_refresh_token=seed)  # stale seed in the config
    assert tm2.access_token() != token and fake.calls == ["ok", "ok"]


def test_empty_store_without_seed_asks_for_a_login(tmp_path):
    store = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    with pytest.raises(ReauthorizationRequired, match=r"No Exact Online tokens in file .*tap-exactonline auth"):
        TokenManager(store, FakeExact()).access_token()
    assert not (tmp_path / "t.json").exists()


def test_stale_seed_explains_itself(tmp_path):
    fake = FakeExact()
    seed = fake.mint().refresh_token
    fake.last_issue -= 1000
    fake.refresh(seed)
    store = FileTokenStore(tmp_path / "t.json", client_id=CLIENT)
    with pytest.raises(ReauthorizationRequired, match="refresh_token in the config is not the newest"):
        TokenManager(store, fake, seed_refresh_token=seed).access_token()
