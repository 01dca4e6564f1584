"""`tap-exactonline auth` end to end against the sandbox's authorization and token endpoints.

The test plays the browser: it opens the printed consent URL (the sandbox consents at once and
redirects), then either pastes the redirected URL or follows it to the command's callback server.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from exactonline_api.errors import AuthorizationCodeRejected, ExactError
from exactonline_api.oauth import OAuthClient
from exactonline_api.tokens import FileTokenStore
from tap_exactonline.auth import parse_redirect
from tests.tokens_support import AuthProcess, consent, write_auth_config


def check_output_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in text


def test_paste_path_saves_tokens_and_lists_granted_divisions(sandbox, tmp_path):
    config = write_auth_config(tmp_path, sandbox)
    run = AuthProcess(config, "--paste")
    url = run.consent_url(sandbox.url)
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"] == ["https://example.com/callback"] and len(query["state"][0]) >= 20
    redirected = consent(url)
    assert redirected.startswith("https://example.com/callback?")
    code, out, err = run.finish(redirected + "\n")
    assert code == 0, err
    stored = FileTokenStore(tmp_path / "tokens.json", client_id=sandbox.client_id).read()
    assert stored is not None and stored.access_token and stored.refresh_token
    for division in sandbox.divisions:
        assert f"  {division}  " in out
    assert "Tokens saved to file" in out
    auth_code = parse_qs(urlsplit(redirected).query)["code"][0]
    check_output_clean(out + err, stored.access_token, stored.refresh_token, auth_code, sandbox.client_secret)
    calls = [r for r in sandbox.requests() if "oauth2/token" in r["path"]]
    assert len(calls) == 1 and calls[0]["status"] == 200  # one exchange, nothing retried


def test_callback_path_on_localhost(sandbox, tmp_path):
    config = write_auth_config(tmp_path, sandbox, redirect_uri="http://127.0.0.1:0/exact/callback")
    run = AuthProcess(config)  # auto: a localhost redirect URI means callback mode
    url = run.consent_url(sandbox.url)
    redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    port = urlsplit(redirect_uri).port
    assert port and port != 0 and redirect_uri.endswith("/exact/callback")
    redirected = consent(url)
    browser = requests.get(redirected, timeout=10)  # the browser follows the redirect to our server
    assert browser.status_code == 200 and "close this tab" in browser.text
    assert "code" not in browser.text.lower().replace("exact online", "")
    code, out, err = run.finish()
    assert code == 0, err
    assert FileTokenStore(tmp_path / "tokens.json", client_id=sandbox.client_id).read() is not None
    assert str(sandbox.divisions[0]) in out


def test_pasted_url_from_another_attempt_is_refused_and_nothing_is_saved(sandbox, tmp_path):
    config = write_auth_config(tmp_path, sandbox)
    first = AuthProcess(config, "--paste")
    stale = consent(first.consent_url(sandbox.url))
    first.proc.kill()
    first.proc.wait()
    second = AuthProcess(config, "--paste")
    second.consent_url(sandbox.url)
    code, out, err = second.finish(stale + "\n")
    assert code == 1
    assert "state in that URL does not match" in err and err.count("\n") == 1
    assert not (tmp_path / "tokens.json").exists()
    assert not [r for r in sandbox.requests() if "oauth2/token" in r["path"]]  # code never sent


def test_paste_of_something_else_explains_what_to_paste(tmp_path):
    with pytest.raises(ExactError, match="paste the complete address"):
        parse_redirect("XTzM!IAAAbarecode", "state")
    with pytest.raises(ExactError, match="cancelled or access was denied"):
        parse_redirect("https://example.com/callback?error=access_denied&state=s", "s")
    assert parse_redirect("https://example.com/callback?code=XTzM%21IAAA&state=s", "s") == "XTzM!IAAA"


def _fresh_code(sandbox, redirect_uri: str = "https://example.com/callback") -> tuple[OAuthClient, str]:
    oauth = OAuthClient(sandbox.url, sandbox.client_id, sandbox.client_secret)
    location = consent(oauth.authorization_url(redirect_uri, "s"))
    return oauth, parse_qs(urlsplit(location).query)["code"][0]


def test_reused_code_gets_a_clear_explanation(sandbox):
    oauth, code = _fresh_code(sandbox)
    oauth.exchange_code(code, "https://example.com/callback")
    with pytest.raises(AuthorizationCodeRejected) as info:
        oauth.exchange_code(code, "https://example.com/callback")
    message = str(info.value)
    assert "works once and only for 3 minutes" in message and code not in message
    assert "run the auth command again" in message


def test_wrong_redirect_uri_gets_a_clear_explanation(sandbox):
    oauth, code = _fresh_code(sandbox)
    with pytest.raises(AuthorizationCodeRejected) as info:
        oauth.exchange_code(code, "https://example.com/other")
    assert "redirect_uri (https://example.com/other) must be exactly the one registered" in str(info.value)


def test_unregistered_redirect_uri_is_refused_at_consent_and_the_command_says_why(sandbox, tmp_path):
    oauth = OAuthClient(sandbox.url, sandbox.client_id, sandbox.client_secret)
    answer = requests.get(oauth.authorization_url("https://evil.example/cb", "s"), allow_redirects=False, timeout=10)
    assert answer.status_code == 400  # Exact shows an error page instead of redirecting
    config = write_auth_config(tmp_path, sandbox, redirect_uri="https://evil.example/cb")
    run = AuthProcess(config, "--paste")
    run.consent_url(sandbox.url)
    code, out, err = run.finish("")
    assert "not exactly the redirect URI registered for this app" in out
    assert code == 1 and "no URL was pasted" in err


def test_expired_code_is_explained(sandbox_factory):
    sandbox = sandbox_factory(code_lifetime=1)
    sandbox.freeze()
    oauth, code = _fresh_code(sandbox)
    sandbox.advance(1.5)
    with pytest.raises(AuthorizationCodeRejected, match="3 minutes"):
        oauth.exchange_code(code, "https://example.com/callback")
