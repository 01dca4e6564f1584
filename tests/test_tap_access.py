"""What the app may use, checked before it is used: granted divisions and rights (issue 14)."""

from __future__ import annotations

import contextlib
import io
import logging

from tap_exactonline.tap import TapExactOnline
from tests.taprun import catalog_selecting, run_tap, tap_config


def test_a_configured_division_that_was_not_granted_costs_no_call_and_is_named(sandbox, tmp_path, caplog):
    granted, other = sandbox.divisions[0], sandbox.divisions[1]
    config = tap_config(sandbox, tmp_path, divisions=[granted, other],
                        refresh_token=sandbox.mint_refresh_token(divisions=[granted]))
    with caplog.at_level(logging.ERROR, logger="tap_exactonline"):
        out = run_tap(config, streams={"gl_accounts"}, allow_error=True)
    assert not [c for c in sandbox.requests() if c["division"] == other]
    assert {r["Division"] for r in out.records["gl_accounts"]} == {granted}
    named = [r.getMessage() for r in caplog.records if "not granted" in r.getMessage()]
    assert named == [(f"not reading division(s) {other}: not granted to this app; run `tap-exactonline auth` "
                      "again and tick them on Exact's consent screen")]
    assert str(out.error) == (f"division(s) {other} not read: not granted to this app (run `tap-exactonline auth` "
                              "again and tick them); the other divisions were read and their state saved")
    assert out.state and out.state["bookmarks"]["gl_accounts"]["partitions"][0]["context"] == {"Division": granted}

    alone = tap_config(sandbox, tmp_path, divisions=[other], refresh_token=sandbox.mint_refresh_token([granted]))
    sandbox.reset_log()
    nothing = run_tap(alone, streams={"gl_accounts"}, allow_error=True)
    assert str(nothing.error) == (f"none of the configured divisions ({other}) is granted to this app: run "
                                  "`tap-exactonline auth` again and tick them on Exact's consent screen")
    assert not [c for c in sandbox.requests() if c["division"] == other]


def test_a_forbidden_stream_is_reported_not_silently_loaded_as_empty(sandbox_factory, tmp_path, caplog):
    sandbox = sandbox_factory(no_rights="crm/Accounts")
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    with caplog.at_level(logging.WARNING, logger="exactonline_api.access"):
        out = run_tap(config, streams={"accounts", "gl_accounts"})
    assert out.records["accounts"] == [] and out.records["gl_accounts"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"accounts read 0 rows in division {division} because the Exact user has no "
                                  "right to read ")
    rights_calls = [c for c in sandbox.requests() if c["path"] == "users/UserHasRights"]
    # Asked once, only for the stream that read nothing (gl_accounts read rows: no question).
    assert [c["query"]["endpoint"] for c in rights_calls] == ["'sync/CRM/Accounts'"]


def test_connection_test_lists_selected_streams_without_rights(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(no_rights="crm/Accounts,financial/GLAccounts")
    config = tap_config(sandbox, tmp_path, divisions=[sandbox.divisions[0]])
    catalog = catalog_selecting(config, {"accounts", "items", "gl_accounts"})
    tap = TapExactOnline(config=config, catalog=catalog)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert tap.run_connection_test()
    last = printed.getvalue().strip().splitlines()[-1]
    assert last.startswith(f"Selected streams without rights in division {sandbox.divisions[0]}: ")
    assert "accounts (" in last and "gl_accounts (" in last and "items" not in last
    assert len([c for c in sandbox.requests() if c["path"] == "users/UserHasRights"]) == 3


def test_a_read_exact_refuses_fails_that_stream_in_its_words_without_retries(sandbox, tmp_path):
    division = sandbox.divisions[0]
    config = tap_config(sandbox, tmp_path, divisions=[division])
    sandbox.faults({"kind": "refuse", "path": "sync/Financial/GLAccounts", "method": "GET",
                    "message": "Module niet beschikbaar in dit pakket."})
    out = run_tap(config, streams={"gl_accounts", "journals"}, allow_error=True)
    assert out.records["journals"] and not out.records["gl_accounts"]
    assert len([c for c in sandbox.requests() if c["path"] == "sync/Financial/GLAccounts"]) == 1
    assert str(out.error) == (f"1 stream(s) failed (state kept for the others): gl_accounts in division {division}: "
                              "Exact API sync/Financial/GLAccounts answered HTTP 500: Module niet beschikbaar in dit "
                              "pakket.")
