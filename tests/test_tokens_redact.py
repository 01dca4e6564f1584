"""Secrets never reach log output, error messages or tracebacks."""

from __future__ import annotations

import logging
import subprocess
import sys

from exactonline_api import redact
from exactonline_api.errors import ExactAPIError, ExactError, ReauthorizationRequired

SECRET = "Gcp7!IAAAABh4-very-secret+refresh/token=="


def test_known_values_are_masked_in_every_encoding():
    redact.register_secret(SECRET)
    for shown in (SECRET, "Gcp7%21IAAAABh4-very-secret%2Brefresh%2Ftoken%3D%3D",
                  "Gcp7%21IAAAABh4-very-secret%2Brefresh/token%3D%3D"):
        assert redact.redact(f"x {shown} y") == "x *** y"


def test_secret_shapes_are_masked_even_when_unregistered():
    text = redact.redact(
        "grant_type=refresh_token&refresh_token=abc123unregistered&client_secret=s3cr3t-unreg "
        '{"access_token": "tok-unregistered", "expires_in": "600"} '
        "Authorization: Bearer eyJunregistered.part "
        "https://host/cb?code=XTzM%21IAAAunreg&state=abc"
    )
    assert "unreg" not in text
    assert "grant_type=refresh_token" in text and '"expires_in": "600"' in text and "state=abc" in text


def test_exact_fields_with_pascal_case_names_are_left_alone():
    assert redact.redact('{"Code": "1000", "Description": "x"}') == '{"Code": "1000", "Description": "x"}'


def test_short_values_are_not_registered():
    redact.register_secret("abc")
    assert redact.redact("abcdef abc") == "abcdef abc"


def test_errors_are_one_line_and_scrubbed():
    redact.register_secret("error-secret-value-123")
    err = ExactAPIError(400, "bad\r\nthing error-secret-value-123", "/api/v1/1/crm/Accounts")
    assert str(err) == "Exact API /api/v1/1/crm/Accounts answered HTTP 400: bad thing ***"
    assert err.status == 400 and err.path == err.url_path == "/api/v1/1/crm/Accounts"
    assert "tap-exactonline auth" in str(ReauthorizationRequired("The refresh token expired"))
    assert isinstance(ReauthorizationRequired("x"), ExactError)


def test_filter_masks_arguments_and_tracebacks(caplog):
    redact.register_secret("filter-secret-value-456")
    logger = logging.getLogger("test.redact.filter")
    handler_filter = redact.RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        try:
            raise ValueError("boom filter-secret-value-456")
        except ValueError:
            logger.exception("failed with %s", "filter-secret-value-456")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert "filter-secret-value-456" not in caplog.text
    assert "failed with ***" in caplog.text and "boom ***" in caplog.text


def test_install_covers_every_logger_and_uncaught_exceptions():
    # A fresh interpreter: install() changes process-wide hooks.
    code = """
import logging, sys
from exactonline_api import redact
redact.install()
redact.register_secret("install-secret-value-789")
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
logging.getLogger("urllib3.connectionpool").debug("GET /?x=%s", "install-secret-value-789")
logging.getLogger("singer_sdk").info({"refresh_token": "install-secret-value-789"})
raise RuntimeError("uncaught install-secret-value-789")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    output = run.stdout + run.stderr
    assert run.returncode == 1
    assert "install-secret-value-789" not in output
    assert output.count("***") >= 3 and "RuntimeError: uncaught ***" in output


def test_rotating_values_are_bounded_but_pinned_ones_stay():
    redact.register_secret("pinned-client-secret-000", pin=True)
    for n in range(200):
        redact.register_secret(f"rotating-token-{n:04d}-xxxx")
    assert redact.redact("rotating-token-0199-xxxx") == "***"
    assert redact.redact("pinned-client-secret-000") == "***"
    assert redact.redact("rotating-token-0000-xxxx") == "rotating-token-0000-xxxx"  # long dead, forgotten


def test_the_last_eight_token_pairs_are_masked_and_a_value_registered_after_a_redaction_too():
    # The window is 16 values (8 refreshes, 80 minutes); the pattern is rebuilt when next needed.
    pairs = [(f"access-{n:03d}-abcdef", f"refresh-{n:03d}-!AAEA+") for n in range(20)]
    for access, refresh in pairs:
        redact.register_secret(access)
        redact.register_secret(refresh)
        assert redact.redact(f"Bearer {access} {refresh}") == "Bearer *** ***"
    recent = " ".join(value for pair in pairs[-8:] for value in pair)
    assert set(redact.redact(recent).split()) == {"***"}
    assert redact.redact(pairs[11][0]) == pairs[11][0]  # nine refreshes ago: dead at Exact, forgotten
