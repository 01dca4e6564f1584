"""Point 8: the request log and call counters, and starting the sandbox by hand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import requests


def test_log_entries_and_counters(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    sandbox.reset_log()
    api.get(101, "sync/Financial/TransactionLines", {"$select": "ID,Timestamp", "$filter": "Timestamp gt 1L"})
    api.get(101, "sync/Financial/TransactionLines", {"$select": "ID,Timestamp", "$filter": "Timestamp gt 2L"})
    api.get(102, "crm/Accounts", {"$select": "ID"})  # 400: mandatory filter
    api.get(None, "current/Me")
    api.post(101, "documents/Documents", {"Subject": "x", "Type": 20})
    sandbox.records(101, "crm/Accounts")  # admin calls are not logged
    entries = sandbox.requests()
    assert [(e["method"], e["path"], e["division"], e["status"]) for e in entries] == [
        ("GET", "sync/Financial/TransactionLines", 101, 200), ("GET", "sync/Financial/TransactionLines", 101, 200),
        ("GET", "crm/Accounts", 102, 400), ("GET", "current/Me", None, 200),
        ("POST", "documents/Documents", 101, 201)]
    first = entries[0]
    assert first["query"] == {"$select": "ID,Timestamp", "$filter": "Timestamp gt 1L"}
    assert first["client"] == sandbox.client_id and first["rows"] == 300 and first["ts"] > 0
    assert len(sandbox.requests(path="sync/Financial/TransactionLines", division=101)) == 2
    counters = {(c["method"], c["path"], c["division"]): c for c in sandbox.counters()}
    assert counters[("GET", "sync/Financial/TransactionLines", 101)]["count"] == 2
    assert counters[("GET", "crm/Accounts", 102)]["statuses"] == {"400": 1}
    sandbox.reset_log()
    assert sandbox.requests() == [] and sandbox.counters() == []


def test_log_never_holds_secrets(sandbox, sandbox_client):
    api = sandbox_client(sandbox)
    refresh = sandbox.mint_refresh_token()
    requests.post(sandbox.url + "/api/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh, "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret})
    consent = requests.get(sandbox.url + "/api/oauth2/auth", allow_redirects=False, params={
        "client_id": sandbox.client_id, "redirect_uri": sandbox.redirect_uri, "response_type": "code", "state": "s"})
    code = re.search(r"code=([^&]+)", consent.headers["Location"]).group(1)
    api.get(101, "documents/Documents", {"$select": "ID"})
    dumped = json.dumps(sandbox.requests())
    for secret in (api.token, refresh, sandbox.client_secret, code, requests.utils.unquote(code)):
        assert secret not in dumped
    token_calls = sandbox.requests(path="oauth2/token")
    assert token_calls and token_calls[-1]["grant_type"] == "refresh_token"


def test_started_by_hand():
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-m", "exact_sandbox", "--port", "0", "--seed", "5",
                                "--divisions", "201,202", "--volume", "accounts=7", "--knob", "minutely_limit=9"],
                               cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.fullmatch(r"sandbox listening on (http://127\.0\.0\.1:\d+)\n", line).group(1)
        knobs = requests.get(url + "/_sandbox/knobs").json()["knobs"]
        assert knobs["seed"] == 5 and knobs["minutely_limit"] == 9 and knobs["divisions"] == "201,202"
        assert len(requests.get(url + "/_sandbox/records/202/crm/Accounts").json()["records"]) == 7
    finally:
        process.terminate()
        process.wait(timeout=10)
