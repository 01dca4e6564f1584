"""Faults and limits end to end: `meltano run` with the real tap, target-postgres and PostgreSQL.

tests/test_tap_faults.py proves each fault in-process against the upserted Singer output; these
prove the same against a real warehouse, the way a scheduler runs the job:

1. transient faults together in one run (20 % 5xx, dropped connections, a malformed page, a
   maintenance page, a 429 storm without headers, slow and timed-out answers, a tight minutely
   limit): the one run succeeds and the tables equal the sandbox (and a page that hangs longer
   than ``request_timeout`` is given up on and read again);
2. the daily budget running out mid-stream: the run exits 75 with one line naming what is left,
   the scheduler waits a day and reruns until done; tables equal the sandbox and no run spent
   more than the daily limit minus ``daily_call_reserve`` in any division;
3. an endpoint blocked by Exact's hourly error limit: the run finishes the other streams and
   fails naming the blocked one; after the block lifts the rerun completes the table.

Every comparison is row by row on every column the tap emits (tests/e2e/compare.py), plus a
check that no primary key occurs twice in any table.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.compare import compared_field_count, diff_rows, entity, records_path
from tests.e2e.conftest import sandbox_running


pytestmark = pytest.mark.e2e

# Small volumes: a sync stream with three pages per division (1,000 rows a page), a standard
# stream with three pages (60 a page), a bulk stream with two pages (1,000 a page).
VOLUMES = {"transaction_lines": 2500, "financial/Journals": 150, "cashflow/Receivables": 1200}
ALL_STREAMS = ("gl_accounts", "journals", "receivables", "transaction_lines")
# The main job's extract and load (its dbt step models the finance streams, which these tests do
# not all select; tests/e2e/test_main_job.py runs the whole job).
JOB = ("tap-exactonline", "target-postgres")
# Sandbox request-log paths of the API (not OAuth): faults go here only. The token endpoint is
# deliberately left alone: a refresh whose answer is lost is never retried blindly (Exact
# rotates refresh tokens), which is a test of its own (tests/test_tokens_failures.py).
API_PREFIXES = ("sync/", "bulk/", "financial/", "read/", "system/", "current/")


@pytest.fixture
def exact(tmp_path):
    """The demo's sandbox (two divisions) with the volumes above; overrides conftest's `exact`."""
    with sandbox_running(tmp_path, VOLUMES) as sandbox:
        yield sandbox


# -- helpers ---------------------------------------------------------------------------------------

def job_env(streams, **settings) -> dict[str, str]:
    """Select ``streams`` and set tap settings the way a deployment does: environment variables."""
    env = {"TAP_EXACTONLINE__SELECT": json.dumps([f"{s}.*" for s in streams])}
    for name, value in settings.items():
        env[f"TAP_EXACTONLINE_{name.upper()}"] = str(value)
    return env


def sandbox_rows(exact, stream: str) -> list[dict]:
    rows = []
    for division in exact.divisions:
        for row in exact.records(division, records_path(stream)):
            rows.append({**row, "Division": row.get("Division", division)})
    return rows


def assert_warehouse_equals_sandbox(exact, warehouse, streams) -> dict[str, int]:
    """Every stream's table equals the sandbox row by row; no key twice. Returns live rows per table."""
    tables = warehouse.tables()
    problems: list[str] = []
    live: dict[str, int] = {}
    for stream in streams:
        assert stream in tables, f"{stream} did not land (tables: {sorted(tables)})"
        source = sandbox_rows(exact, stream)
        assert source, f"{stream}: the sandbox holds no rows, nothing would be compared"
        columns = warehouse.columns(stream)
        fields = {f.name for f in entity(stream).fields}
        missing = sorted({name for row in source for name in row} & fields - columns)
        if missing:
            problems.append(f"{stream}: fields with no warehouse column: {missing}")
        assert compared_field_count(stream, source, columns) >= 5, f"{stream}: too few fields compared"
        rows = warehouse.rows(stream)
        problems += diff_rows(stream, source, rows)
        # No key twice at all, tombstones included: the upsert must have merged every rerun.
        key = ", ".join(f'"{k}"' for k in entity(stream).key)
        twice = warehouse.query(
            f'SELECT {key}, count(*) FROM "{warehouse.schema}"."{stream}" GROUP BY {key} HAVING count(*) > 1')
        if twice:
            problems.append(f"{stream}: {len(twice)} primary keys occur more than once, e.g. {twice[:3]}")
        live[stream] = len([r for r in rows if r.get("_sdc_deleted_at") is None])
        if live[stream] != len(source):
            problems.append(f"{stream}: {live[stream]} live rows in the warehouse, {len(source)} in the sandbox")
    assert not problems, "warehouse differs from the sandbox:\n  " + "\n  ".join(problems)
    return live


def api_calls(entries) -> list[dict]:
    """Request-log entries of the REST API (not the OAuth endpoints)."""
    return [e for e in entries if not str(e["path"]).startswith("oauth2")]


def charged(entries, division: int) -> int:
    """Calls the sandbox counted against the division's daily limit: the ones that passed its
    limiter. Not counted: answers a fault gave before the API ran, 401 (no valid token), 403 (a
    division not granted or an endpoint blocked) and 429 (the limit itself)."""
    return len([e for e in entries if e.get("division") == division
                and e.get("fault") not in ("error", "drop", "html")
                and e.get("status") not in (401, 403, 429)])


def age_error_budget(meltano, seconds: float) -> None:
    """The hour passes for the app's persistent error budget too (beside the token store): its
    clock is the machine's, so the test moves the refusals it remembers back by as much."""
    path = Path(meltano.env["TAP_EXACTONLINE_TOKEN_STORE"]).with_name("tokens.error-budget.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["errors"] = {key: [moment - seconds for moment in moments] for key, moments in doc["errors"].items()}
    path.write_text(json.dumps(doc), encoding="utf-8")


def take_log(exact) -> list[dict]:
    entries = exact.log()
    exact.reset_log()
    return entries


def run_job(meltano, env: dict, *, check: bool = True):
    """``meltano run tap-exactonline target-postgres`` with JSON logs (plugin lines and exit codes as fields)."""
    return meltano("--log-format=json", "run", *JOB, check=check, env=env)


def events(result) -> list[dict]:
    out = []
    for line in result.output.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def plugin_lines(result, plugin: str = "tap-exactonline") -> list[str]:
    """The plugin's own stderr lines, as Meltano relays them."""
    return [str(e.get("event", "")) for e in events(result)
            if plugin in (e.get("string_id"), e.get("name")) and e.get("stdio", "stderr") == "stderr"]


def extractor_exit_code(result) -> int | None:
    """The tap's exit code, from Meltano's "Block run completed" event."""
    for e in events(result):
        codes = e.get("exit_codes")
        if isinstance(codes, dict) and codes:
            return codes.get("extractors")
    return None


def run_summaries(result) -> list[dict]:
    """The tap's per-division "run summary" lines: calls, retries, waits, budget left."""
    out = []
    for line in plugin_lines(result):
        if "run summary: " in line:
            text = line.split("run summary: ", 1)[1]
            match = re.match(r"(\{.*\})", text)
            if match:
                out.append(match.group(1))
    return out


def budget_stop_line(result) -> str | None:
    """The tap's one-line budget-stop message (``tap-exactonline: daily budget stop: ...``)."""
    lines = [ln for ln in plugin_lines(result) if ln.startswith("tap-exactonline: daily budget stop: ")]
    return lines[-1] if lines else None


def stopped_divisions(line: str, stream: str) -> set[int]:
    """Divisions the budget-stop line names ``stream`` as unfinished for."""
    found = set()
    for division, names in re.findall(r"division (\d+): ([^;.]+)", line.split("unfinished:", 1)[-1]):
        if stream in [n.strip() for n in names.split(",")]:
            found.add(int(division))
    return found


def tail(result, n: int = 40) -> str:
    return "\n".join(result.output.splitlines()[-n:])


def access_token(exact) -> str:
    """A token of the same app through the real token endpoint (one refresh on a new chain)."""
    form = urllib.parse.urlencode({
        "grant_type": "refresh_token", "refresh_token": exact.mint_refresh_token(),
        "client_id": exact.client_id, "client_secret": exact.client_secret}).encode()
    request = urllib.request.Request(exact.url + "/api/oauth2/token", data=form, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def bad_request(exact, token: str, division: int, path: str) -> int:
    """One GET with a broken $filter (HTTP 400): what another tool of the same app might send."""
    url = f"{exact.url}/api/v1/{division}/{path}?" + urllib.parse.urlencode(
        {"$filter": "this is not odata", "$select": "ID"})
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


# -- 1. transient faults in one scheduled run --------------------------------------------------------

def test_transient_faults_in_one_run_leave_the_warehouse_equal_to_exact(meltano, exact, warehouse):
    streams = ALL_STREAMS
    # The sandbox offers every request to the rules in this order; the first that answers wins,
    # so the one-off faults come before the random ones (which would otherwise mask them).
    rules = [
        # Longer than request_timeout: the tap gives up on the answer and asks again, on a
        # timestamp read and on a page read (singer-sdk's own page timeout would be 300 s).
        {"kind": "timeout", "ms": 4000, "path": "read/sync/Sync/SyncTimestamp", "count": 1},
        {"kind": "timeout", "ms": 4000, "path": "sync/Financial/TransactionLines", "after": 3, "count": 1},
        {"kind": "drop", "path": "sync/Financial/TransactionLines", "after": 1, "count": 1},
        {"kind": "drop", "path": "bulk/Cashflow/Receivables", "count": 1},
        {"kind": "html", "path": "financial/Journals", "after": 1, "count": 1},  # maintenance page, HTTP 200
        {"kind": "malformed", "path": "sync/Financial/TransactionLines", "after": 2, "count": 1},
    ]
    for prefix in API_PREFIXES:
        rules += [
            {"kind": "error", "status": 503, "path": prefix, "probability": 0.2},   # 20 % 5xx
            {"kind": "error", "status": 429, "path": prefix, "probability": 0.25},  # 429 storm, no headers
            {"kind": "latency", "ms": 300, "path": prefix, "probability": 0.2},     # slow answers
        ]
    exact.admin("POST", "faults", {"rules": rules, "seed": 7})
    # Exact's minutely limit, in 2-second windows: the tap also throttles on the headers.
    exact.admin("POST", "knobs", {"minutely_limit": 12, "minutely_window_seconds": 2})
    exact.reset_log()

    # Waits capped at 1 s: a 429 without headers would otherwise wait for the next minute.
    env = job_env(streams, request_timeout=2, max_rate_limit_wait=1)
    run = run_job(meltano, env)
    entries = take_log(exact)

    live = assert_warehouse_equals_sandbox(exact, warehouse, streams)
    assert live["transaction_lines"] == 2 * 2500

    # Every fault hit the run, and the tap saw each as what it is.
    fired = {(r["kind"], r["path"]): r["fired"] for r in exact.admin("GET", "faults")["rules"] if r["count"]}
    assert all(fired.values()), f"a one-off fault never fired: {fired}"
    statuses = Counter(e["status"] for e in api_calls(entries) if e.get("fault") == "error")
    assert statuses[503] >= 5 and statuses[429] >= 5, statuses
    limit_429s = len([e for e in entries if e["status"] == 429 and not e.get("fault")])  # with headers
    tap_log = "\n".join(plugin_lines(run))
    # (The sandbox logs a hung request only once its sleep is over: the tap's retry line proves it.)
    for seen in ("Timeout on GET read/sync/Sync/SyncTimestamp", "Timeout on GET sync/Financial/TransactionLines",
                 "ConnectionError on GET sync/Financial/",
                 "ConnectionError on GET bulk/Cashflow/Receivables", "malformed body on GET financial/Journals",
                 "malformed body on GET sync/Financial/TransactionLines", "HTTP 503 on GET", "HTTP 429"):
        assert seen in tap_log, f"the tap never logged {seen!r}; log {run.log_path}"
    summaries = run_summaries(run)
    limit = 5000 - 200  # the sandbox's daily limit (Exact's default) and the default reserve
    per_division = {d: charged(entries, d) for d in exact.divisions}
    assert all(n <= limit for n in per_division.values()), per_division
    print(f"\n[faults] one run {run.seconds:.1f} s; 503s {statuses[503]}, 429s without headers {statuses[429]}, "
          f"429s of the minutely limit {limit_429s}, one-offs {fired}; "
          f"calls charged per division {per_division}; tap summaries {summaries}; rows {live}")


# -- 2. the daily budget runs out mid-stream --------------------------------------------------------

def test_daily_budget_stop_and_next_days_reruns_complete_the_warehouse(meltano, exact, warehouse):
    streams = ("gl_accounts", "journals", "transaction_lines")
    daily_limit, reserve = 11, 3
    exact.admin("POST", "knobs", {"daily_limit": daily_limit})
    exact.reset_log()
    env = job_env(streams, daily_call_reserve=reserve)
    tl_path = records_path("transaction_lines")

    runs, logs, used = [], [], []
    for day in range(1, 7):
        run = run_job(meltano, env, check=False)
        runs.append(run)
        used.append({w["division"]: w["daily_used"] for w in exact.admin("GET", "limits")["windows"]})
        logs.append(take_log(exact))
        if run.returncode == 0:
            break
        stop = budget_stop_line(run)
        assert stop, f"run {day} failed without a budget stop; log {run.log_path}\n" + tail(run)
        if day == 1:
            first_stop = stop
            # Stopped partway: some transaction lines landed, not all.
            landed = warehouse.count("transaction_lines") if "transaction_lines" in warehouse.tables() else 0
            assert 0 < landed < 2 * 2500, f"the first run was meant to stop inside transaction_lines ({landed})"
            # A day in Exact: a line that already landed is deleted, another one changes.
            landed_lines = warehouse.query('SELECT "ID"::text, "Division" FROM exactonline.transaction_lines '
                                           'ORDER BY "Division", "Timestamp" LIMIT 2')
            (gone, gone_division), (edited, edited_division) = landed_lines
            exact.delete(gone_division, tl_path, gone)
            exact.update(edited_division, tl_path, edited, {"Description": "changed overnight"})
        exact.advance(86400)  # the scheduler waits a day; Exact's daily window starts again
    else:
        pytest.fail(f"still not done after {len(runs)} daily runs; last log {runs[-1].log_path}")

    # The first run ended with the budget stop: Meltano fails the run (exit 1) and reports the
    # tap's exit code 75; the tap's last line names the streams and divisions left.
    first = runs[0]
    assert first.returncode == 1
    assert extractor_exit_code(first) == 75, f"tap exit code {extractor_exit_code(first)}; log {first.log_path}"
    assert stopped_divisions(first_stop, "transaction_lines") == set(exact.divisions), first_stop
    assert "the next run resumes there" in first_stop, first_stop
    assert all(extractor_exit_code(r) == 75 for r in runs[:-1])

    live = assert_warehouse_equals_sandbox(exact, warehouse, streams)
    # What changed while the tap waited landed: the deleted line as a tombstone, the change.
    tombstone = warehouse.query('SELECT _sdc_deleted_at FROM exactonline.transaction_lines WHERE "ID"::text = %s',
                                (gone,))
    assert len(tombstone) == 1 and tombstone[0][0] is not None, f"deleted line {gone}: {tombstone}"
    assert warehouse.query('SELECT "ID"::text FROM exactonline.transaction_lines WHERE "Description" = %s',
                           ("changed overnight",)) == [(edited,)]

    # Each rerun went on from the bookmark: across all runs Exact served every line once, plus
    # the one changed overnight once more.
    served = sum(e["rows"] or 0 for entries in logs for e in entries
                 if e["path"] == "sync/Financial/TransactionLines" and e["status"] == 200)
    assert served == 2 * 2500 + 1, f"{served} transaction lines served over {len(runs)} runs"

    # No run spent more of a division's day than the daily limit minus the reserve.
    allowed = daily_limit - reserve
    per_run = [{d: charged(entries, d) for d in exact.divisions} for entries in logs]
    for n, (counted, sandbox_used) in enumerate(zip(per_run, used), 1):
        assert counted == {d: sandbox_used.get(d, 0) for d in exact.divisions}, (n, counted, sandbox_used)
        assert all(c <= allowed for c in counted.values()), f"run {n} spent {counted}, allowed {allowed}"
    assert not any(e["status"] == 429 for entries in logs for e in entries), "a run ran into Exact's daily limit"
    print(f"\n[budget] {len(runs)} runs ({', '.join(f'{r.seconds:.1f} s exit {r.returncode}' for r in runs)}); "
          f"calls charged per run and division {per_run} (allowed {allowed} = {daily_limit} - {reserve}); "
          f"first stop: {first_stop}; rows {live}")


# -- 3. an endpoint blocked by Exact's hourly error limit --------------------------------------------

def test_endpoint_blocked_by_the_error_limit_fails_only_that_stream_until_it_lifts(meltano, exact, warehouse):
    streams = ALL_STREAMS
    blocked_division = exact.divisions[0]
    error_limit = exact.admin("GET", "knobs")["knobs"]["error_limit"]  # Exact's 10 an hour
    # Another tool of the same app sends bad requests to one endpoint of one division until Exact
    # blocks that endpoint for an hour.
    token = access_token(exact)
    statuses = [bad_request(exact, token, blocked_division, "financial/Journals") for _ in range(error_limit + 1)]
    assert statuses == [400] * (error_limit + 1), statuses
    assert bad_request(exact, token, blocked_division, "financial/Journals") == 403
    blocks = exact.admin("GET", "limits")["blocked"]
    assert [(b["division"], b["endpoint"]) for b in blocks] == [(blocked_division, "financial/Journals")]
    exact.reset_log()

    env = job_env(streams)
    first = run_job(meltano, env, check=False)
    first_log = take_log(exact)
    assert first.returncode == 1 and extractor_exit_code(first) == 1, (
        f"exit {first.returncode}, tap {extractor_exit_code(first)}; log {first.log_path}")
    last = [ln for ln in plugin_lines(first) if ln.startswith("tap-exactonline: ")]
    assert last, f"no final line from the tap; log {first.log_path}"
    assert f"journals in division {blocked_division}" in last[-1] and "blocked" in last[-1], last[-1]
    assert "1 stream(s) failed" in last[-1], last[-1]
    # The tap asked the blocked endpoint once, did not retry (a retry would only keep it blocked).
    asked = [e for e in first_log if e["path"] == "financial/Journals" and e["division"] == blocked_division]
    assert [e["status"] for e in asked] == [403], asked

    # Every other stream, and journals in the other division, are complete already.
    assert_warehouse_equals_sandbox(exact, warehouse, [s for s in streams if s != "journals"])
    other = [d for d in exact.divisions if d != blocked_division]
    journals = sandbox_rows(exact, "journals")
    problems = diff_rows("journals", [r for r in journals if r["Division"] in other], warehouse.rows("journals"))
    assert not problems, "\n".join(problems)

    # An hour later the block has lifted: the next scheduled run completes the table.
    exact.advance(3600 + 60)
    age_error_budget(meltano, 3600 + 60)
    second = run_job(meltano, env)
    second_log = take_log(exact)
    live = assert_warehouse_equals_sandbox(exact, warehouse, streams)
    # The rerun read the blocked partition in full (3 pages of 60) and the rest incrementally.
    reread = Counter((e["path"], e["division"]) for e in second_log if e["status"] == 200)
    assert reread[("financial/Journals", blocked_division)] == 3, reread
    for stream in streams:
        for division in exact.divisions:
            if (stream, division) != ("journals", blocked_division):
                assert reread[(entity(stream).source.path, division)] == 1, (stream, division, reread)
    limit = 5000 - 200
    assert all(charged(log, d) <= limit for log in (first_log, second_log) for d in exact.divisions)
    print(f"\n[blocked] run 1 {first.seconds:.1f} s exit {first.returncode}: {last[-1]}\n"
          f"[blocked] run 2 {second.seconds:.1f} s exit {second.returncode}; calls {dict(reread)}; rows {live}; "
          f"calls charged per division: run 1 {[charged(first_log, d) for d in exact.divisions]}, "
          f"run 2 {[charged(second_log, d) for d in exact.divisions]}")
