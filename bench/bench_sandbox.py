"""Benchmark the sandbox: records per second served to one client.

Starts ``python -m exact_sandbox`` as its own process (as the tap's benchmarks
will), then pages through ``sync/Financial/TransactionLines`` (1000 rows a page,
about 30 selected fields) and ``bulk/Financial/TransactionLines`` with one
keep-alive ``requests`` session, parsing every page as a client must.

    .venv/bin/python bench/bench_sandbox.py [--lines 100000] [--fields 30]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["Timestamp", "ID", "Account", "AccountCode", "AccountName", "AmountDC", "AmountFC", "AmountVATFC",
          "Created", "Currency", "Date", "Description", "Division", "Document", "EntryID", "EntryNumber",
          "ExchangeRate", "FinancialPeriod", "FinancialYear", "GLAccount", "GLAccountCode",
          "GLAccountDescription", "InvoiceNumber", "JournalCode", "JournalDescription", "LineNumber",
          "Modified", "Quantity", "Status", "Type", "VATCode", "YourRef", "Notes", "OrderNumber"]


def start(lines: int) -> tuple[subprocess.Popen, str, float]:
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "exact_sandbox", "--port", "0", "--divisions", "101", "--eager",
         "--volume", f"transaction_lines={lines}", "--knob", "minutely_limit=1000000",
         "--knob", "daily_limit=1000000"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    return process, match.group(1), time.perf_counter() - began


def token(session: requests.Session, url: str) -> str:
    refresh = session.post(f"{url}/_sandbox/oauth/refresh-token", json={}).json()["refresh_token"]
    answer = session.post(f"{url}/api/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh,
        "client_id": "sandbox-client-id", "client_secret": "sandbox-secret"})
    answer.raise_for_status()
    return answer.json()["access_token"]


def page_through(session: requests.Session, url: str, params: dict[str, str]) -> tuple[int, int, int, float]:
    began = time.perf_counter()
    records = pages = size = 0
    next_url: str | None = url
    while next_url:
        response = session.get(next_url, params=params if next_url == url else None, timeout=60)
        response.raise_for_status()
        size += len(response.content)
        body = response.json()["d"]
        records += len(body["results"])
        pages += 1
        next_url = body.get("__next")
    return records, pages, size, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--fields", type=int, default=30)
    args = parser.parse_args()
    process, url, startup = start(args.lines)
    try:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {token(session, url)}", "Accept": "application/json"})
        select = ",".join(FIELDS[: args.fields])
        print(f"sandbox: {url}, {args.lines} transaction lines generated and listening in {startup:.2f} s")
        runs = [
            ("sync", f"{url}/api/v1/101/sync/Financial/TransactionLines",
             {"$select": select, "$filter": "Timestamp gt 1L"}),
            ("bulk", f"{url}/api/v1/101/bulk/Financial/TransactionLines",
             {"$select": ",".join(FIELDS[1: args.fields + 1])}),  # bulk rows have no Timestamp
        ]
        for name, endpoint, params in runs:
            records, pages, size, seconds = page_through(session, endpoint, params)
            print(f"{name:5s}: {records} records in {pages} pages, {seconds:.2f} s -> "
                  f"{records / seconds:,.0f} records/s ({size / seconds / 1e6:.1f} MB/s, "
                  f"{seconds / pages * 1000:.1f} ms/page, {args.fields} fields)")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
