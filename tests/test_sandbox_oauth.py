"""Point 3: consent, codes, rotating refresh tokens, the 570 s rule, lifetimes (driven by the sandbox clock)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import requests


def _token(handle, **form):
    form.setdefault("client_id", handle.client_id)
    form.setdefault("client_secret", handle.client_secret)
    return requests.post(handle.url + "/api/oauth2/token", data=form)


def _refresh(handle, refresh_token):
    return _token(handle, grant_type="refresh_token", refresh_token=refresh_token)


def _consent(handle, **params):
    query = {"client_id": handle.client_id, "redirect_uri": handle.redirect_uri, "response_type": "code",
             "state": "xyz", **params}
    return requests.get(handle.url + "/api/oauth2/auth", params=query, allow_redirects=False)


def _code(handle, **params):
    location = _consent(handle, **params).headers["Location"]
    return parse_qs(urlparse(location).query)["code"][0]


def _me(handle, access_token):
    return requests.get(handle.url + "/api/v1/current/Me",
                        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})


def test_consent_redirects_with_a_code_containing_bang(sandbox):
    response = _consent(sandbox)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(sandbox.redirect_uri + "?code=")
    assert "%21" in location and "!" not in location
    query = parse_qs(urlparse(location).query)
    assert query["state"] == ["xyz"] and "!" in query["code"][0]
    local = _consent(sandbox, redirect_uri="http://127.0.0.1:8123/cb")
    assert local.status_code == 302 and local.headers["Location"].startswith("http://127.0.0.1:8123/cb?code=")


def test_consent_refuses_unknown_redirect_uri_and_client(sandbox):
    wrong = _consent(sandbox, redirect_uri="https://evil.example/cb")
    assert wrong.status_code == 400 and "https://evil.example/cb" in wrong.text
    assert "text/html" in wrong.headers["Content-Type"]
    assert _consent(sandbox, client_id="someone-else").status_code == 400


def test_code_exchange_once(sandbox):
    code = _code(sandbox)
    first = _token(sandbox, grant_type="authorization_code", code=code, redirect_uri=sandbox.redirect_uri)
    assert first.status_code == 200
    tokens = first.json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == "600"
    assert "!" in tokens["refresh_token"] and len(tokens["access_token"]) > 600
    assert _me(sandbox, tokens["access_token"]).status_code == 200
    again = _token(sandbox, grant_type="authorization_code", code=code, redirect_uri=sandbox.redirect_uri)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert again.headers["Reason"].startswith("Unknown: Token is not allowed")


def test_code_expires_after_three_minutes(sandbox):
    code = _code(sandbox)
    sandbox.advance(181)
    late = _token(sandbox, grant_type="authorization_code", code=code, redirect_uri=sandbox.redirect_uri)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


def test_token_endpoint_wants_form_and_credentials(sandbox):
    refresh = sandbox.mint_refresh_token()
    as_json = requests.post(sandbox.url + "/api/oauth2/token", json={
        "grant_type": "refresh_token", "refresh_token": refresh,
        "client_id": sandbox.client_id, "client_secret": sandbox.client_secret})
    assert as_json.status_code == 400
    wrong = _token(sandbox, grant_type="refresh_token", refresh_token=refresh, client_secret="nope")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    assert _refresh(sandbox, refresh).status_code == 200  # neither attempt consumed the token


def test_refresh_rotates_and_old_token_is_refused(sandbox):
    first = sandbox.mint_refresh_token()
    answer = _refresh(sandbox, first)
    assert answer.status_code == 200
    second = answer.json()["refresh_token"]
    assert second != first
    reused = _refresh(sandbox, first)
    assert reused.status_code == 401
    assert reused.json() == {"error": "unauthorized_client", "error_description": "Old refresh token used."}
    sandbox.advance(571)
    third = _refresh(sandbox, second)
    assert third.status_code == 200 and third.json()["refresh_token"] not in (first, second)
    assert _refresh(sandbox, second).status_code == 401
    chain = sandbox.chains()[0]
    assert chain["refreshes"] == 2 and chain["old_token_reuses"] == 2


def test_refresh_too_early_is_refused_without_consuming_the_token(sandbox):
    answer = _refresh(sandbox, sandbox.mint_refresh_token()).json()
    sandbox.advance(560)
    early = _refresh(sandbox, answer["refresh_token"])
    assert early.status_code == 400
    assert early.json() == {"error": "access_denied", "error_description": "Rate limit exceeded: access_token not expired"}
    assert early.headers["Reason"] == "TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired"
    sandbox.advance(11)
    later = _refresh(sandbox, answer["refresh_token"])
    assert later.status_code == 200
    chain = sandbox.chains()[0]
    assert chain["refreshes"] == 2 and chain["rejected_too_early"] == 1


def test_access_token_expires_after_600_seconds(sandbox):
    access = _refresh(sandbox, sandbox.mint_refresh_token()).json()["access_token"]
    sandbox.advance(599)
    assert _me(sandbox, access).status_code == 200
    sandbox.advance(2)
    expired = _me(sandbox, access)
    assert expired.status_code == 401 and "Object moved" in expired.text
    assert _me(sandbox, "not-a-token").status_code == 401


def test_refresh_token_expires_after_30_days(sandbox):
    refresh = _refresh(sandbox, sandbox.mint_refresh_token()).json()["refresh_token"]
    sandbox.advance(30 * 86400 + 1)
    expired = _refresh(sandbox, refresh)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_request"
    assert expired.json()["error_description"].startswith("The refresh token expired at ")


def test_lifetimes_are_knobs(sandbox_factory):
    handle = sandbox_factory(access_token_lifetime=1, refresh_too_early_seconds=0.5)
    handle.freeze()  # "too early" and "expired" decided by the test, not by the machine's speed
    answer = _refresh(handle, handle.mint_refresh_token()).json()
    assert answer["expires_in"] == "1"
    assert _refresh(handle, answer["refresh_token"]).status_code == 400  # too early
    handle.advance(1.1)
    assert _me(handle, answer["access_token"]).status_code == 401
    assert _refresh(handle, answer["refresh_token"]).status_code == 200


def test_consent_can_grant_a_subset_of_divisions(sandbox):
    code = _code(sandbox, divisions="102")
    access = _token(sandbox, grant_type="authorization_code", code=code,
                    redirect_uri=sandbox.redirect_uri).json()["access_token"]
    headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
    listed = requests.get(sandbox.url + "/api/v1/102/system/Divisions", headers=headers, params={"$select": "Code"})
    assert [r["Code"] for r in listed.json()["d"]["results"]] == [102]
    refused = requests.get(sandbox.url + "/api/v1/101/documents/Documents", headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["message"]["value"]


def test_revoked_chain(sandbox):
    refresh = sandbox.mint_refresh_token()
    answer = _refresh(sandbox, refresh).json()
    sandbox.admin("POST", "/oauth/revoke", {"refresh_token": answer["refresh_token"]})
    assert _me(sandbox, answer["access_token"]).status_code == 401
    sandbox.advance(600)
    assert _refresh(sandbox, answer["refresh_token"]).json()["error"] == "invalid_grant"
