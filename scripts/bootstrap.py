#!/usr/bin/env python3
"""Install everything the demo and the test suite need, idempotently.

Standard library only, so it runs with any Python >= 3.10 on a fresh machine:

* ``.venv-meltano/``  the tools venv: Meltano and the embedded PostgreSQL
  (``scripts/requirements-meltano.txt``), apart from the project's own venv so
  Meltano's pins never meet singer-sdk's;
* ``.venv/``          the dev venv: this package editable with ``[dev]`` (pytest,
  the sandbox's dependencies);
* ``.meltano/``       the plugins of ``meltano.yml`` (``meltano install``);
* ``.venv-orchestrate/`` Dagster (``orchestrate/requirements.txt``), which runs the main
  job in shards of divisions; apart again, so Dagster's pins meet neither Meltano's
  nor singer-sdk's.

Each step is skipped when what it would install is already there (a stamp file
holds the hash of its inputs), so a second run takes a second or two.

Usage: ``python3 scripts/bootstrap.py [--tools] [--dev] [--plugins] [--orchestrate]`` (no flag: all).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_VENV = ROOT / ".venv"
TOOLS_VENV = ROOT / ".venv-meltano"
TOOLS_REQUIREMENTS = ROOT / "scripts" / "requirements-meltano.txt"
ORCHESTRATE_VENV = ROOT / ".venv-orchestrate"
ORCHESTRATE_REQUIREMENTS = ROOT / "orchestrate" / "requirements.txt"
LOG_DIR = ROOT / ".meltano" / "logs"
MIN_PYTHON = (3, 10)


def log(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def venv_bin(venv: Path, name: str) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / (name + ".exe")
    return venv / "bin" / name


def meltano_bin() -> Path:
    return venv_bin(TOOLS_VENV, "meltano")


def tools_python() -> Path:
    return venv_bin(TOOLS_VENV, "python")


def dev_python() -> Path:
    return venv_bin(DEV_VENV, "python")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


def _stamp_ok(venv: Path, name: str, digest: str) -> bool:
    stamp = venv / f".{name}.stamp"
    return stamp.exists() and stamp.read_text().strip() == digest


def _write_stamp(venv: Path, name: str, digest: str) -> None:
    (venv / f".{name}.stamp").write_text(digest + "\n")


def run_logged(cmd: list[str], log_name: str, *, cwd: Path = ROOT, env: dict | None = None) -> None:
    """Run a command with its output in ``.meltano/logs/<log_name>``; show it on failure."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / log_name
    with log_path.open("w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-60:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n  full log: {log_path}")


@contextlib.contextmanager
def _lock():
    """Serialise concurrent bootstraps (pytest-xdist workers, a demo and a test run)."""
    (ROOT / ".meltano").mkdir(exist_ok=True)
    path = ROOT / ".meltano" / ".bootstrap.lock"
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent bootstraps there
        yield
        return
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_python() -> None:
    if sys.version_info < MIN_PYTHON:
        raise SystemExit(f"Python >= {'.'.join(map(str, MIN_PYTHON))} is required (this is {sys.version.split()[0]})")


def _pip_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    # uv installs no bytecode by default; with PYTHONDONTWRITEBYTECODE set (as on CI machines)
    # every tap process would then compile ~500 modules, a second of CPU per start.
    env.setdefault("UV_COMPILE_BYTECODE", "1")
    env.pop("VIRTUAL_ENV", None)
    return env


def _once(venv: Path, stamp: str, digest: str, ready: Path, title: str, install) -> bool:
    """Run ``install`` unless ``ready`` exists and the stamp holds ``digest``. True if it ran."""
    if ready.exists() and _stamp_ok(venv, stamp, digest):
        return False
    t0 = time.monotonic()
    log(title)
    install()
    _write_stamp(venv, stamp, digest)
    log(f"   done in {time.monotonic() - t0:.0f}s")
    return True


def ensure_tools_venv() -> bool:
    """Meltano + embedded PostgreSQL in ``.venv-meltano``. Returns True if it installed anything."""
    def install() -> None:
        if not tools_python().exists():
            run_logged([sys.executable, "-m", "venv", str(TOOLS_VENV)], "venv-tools.log")
        run_logged([str(tools_python()), "-m", "pip", "install", "-q", "-r", str(TOOLS_REQUIREMENTS)],
                   "pip-tools.log", env=_pip_env())

    return _once(TOOLS_VENV, "tools", _digest(TOOLS_REQUIREMENTS.read_bytes(), sys.version.encode()), meltano_bin(),
                 f"installing Meltano and the embedded PostgreSQL into {TOOLS_VENV.name}/ (once)", install)


def _uv() -> Path | None:
    uv = venv_bin(TOOLS_VENV, "uv")
    return uv if uv.exists() else None


def _install(venv: Path, name: str, args: list[str]) -> None:
    """Create ``venv`` when missing and install ``args`` into it (with Meltano's uv when there)."""
    python = venv_bin(venv, "python")
    if not python.exists():
        run_logged([sys.executable, "-m", "venv", str(venv)], f"venv-{name}.log")
    uv = _uv()
    if uv is not None:  # uv ships with Meltano: 10x faster than pip here
        cmd = [str(uv), "pip", "install", "--python", str(python), *args]
    else:
        cmd = [str(python), "-m", "pip", "install", "-q", *args]
    run_logged(cmd, f"pip-{name}.log", env=_pip_env())


def ensure_dev_venv() -> bool:
    """This package editable with [dev] in ``.venv``. Returns True if it installed anything."""
    return _once(DEV_VENV, "dev", _digest((ROOT / "pyproject.toml").read_bytes()), dev_python(),
                 f"installing tap-exactonline[dev] (editable) into {DEV_VENV.name}/",
                 lambda: _install(DEV_VENV, "dev", ["-e", ".[dev]"]))


def orchestrate_bin(name: str = "dagster") -> Path:
    return venv_bin(ORCHESTRATE_VENV, name)


def ensure_orchestrate_venv() -> bool:
    """Dagster in ``.venv-orchestrate``. Returns True if it installed anything."""
    return _once(ORCHESTRATE_VENV, "orchestrate",
                 _digest(ORCHESTRATE_REQUIREMENTS.read_bytes(), sys.version.encode()), orchestrate_bin(),
                 f"installing Dagster into {ORCHESTRATE_VENV.name}/",
                 lambda: _install(ORCHESTRATE_VENV, "orchestrate", ["-r", str(ORCHESTRATE_REQUIREMENTS)]))


def meltano_env(extra: dict | None = None) -> dict:
    """Environment for running ``meltano`` from the tools venv in this project."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{venv_bin(TOOLS_VENV, 'meltano').parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
    env.setdefault("NO_COLOR", "1")
    if extra:
        env.update(extra)
    return env


# Settings a shell may hold for another run, which Meltano ranks above meltano.yml or the orchestrator
# reads: the plugins' settings by Meltano's names (TAP_EXACTONLINE_BASE_URL, ...), Meltano's own
# (MELTANO_ENVIRONMENT, the project root, the state database), the README's exports for prod
# (EXACT_CLIENT_ID, EXACT_TOKEN_STORE, EXACT_SHARDS, ...; WAREHOUSE_* only reach the prod environment).
INHERITED_SETTINGS = ("TAP_EXACTONLINE_", "TARGET_EXACTONLINE_", "TAP_SPREADSHEETS_", "TARGET_POSTGRES_",
                      "DBT_", "MELTANO_", "EXACT_", "DEMO_", "DAGSTER_")


def own_meltano_env(extra: dict | None = None) -> dict:
    """``meltano_env`` for a run that brings every setting it depends on (the demo, the benchmarks).

    The inherited settings above are dropped: a benchmark started in the shell that followed the
    README would otherwise send its sandbox's refresh token to another Exact, keep its tokens in
    prod's store or run another environment, and fail or measure something else."""
    env = {name: value for name, value in meltano_env().items() if not name.startswith(INHERITED_SETTINGS)}
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env.update(extra or {})
    return env


def ensure_plugins() -> bool:
    """``meltano install``: a venv per plugin under ``.meltano/`` (skipped when up to date)."""
    digest = _digest((ROOT / "meltano.yml").read_bytes(), (ROOT / "pyproject.toml").read_bytes())
    stamp_dir = ROOT / ".meltano"
    if _stamp_ok(stamp_dir, "plugins", digest) and all(
        (stamp_dir / kind / name / "venv").exists()
        for kind, name in (("extractors", "tap-exactonline"), ("extractors", "tap-spreadsheets"),
                           ("loaders", "target-postgres"), ("loaders", "target-exactonline"),
                           ("utilities", "dbt-postgres"))
    ):
        return False
    t0 = time.monotonic()
    log("installing the Meltano plugins (meltano install)")
    env = meltano_env({"UV_COMPILE_BYTECODE": "1"})
    env.pop("MELTANO_SYS_DIR_ROOT", None)  # the plugins belong in this project's .meltano/
    run_logged([str(meltano_bin()), "install"], "meltano-install.log", env=env)
    _write_stamp(stamp_dir, "plugins", digest)
    log(f"   done in {time.monotonic() - t0:.0f}s")
    return True


def bootstrap(*, tools: bool = True, dev: bool = True, plugins: bool = True, orchestrate: bool = False) -> None:
    _check_python()
    with _lock():
        if tools or plugins or dev or orchestrate:
            ensure_tools_venv()  # dev and orchestrate use its uv; plugins use its meltano
        if dev:
            ensure_dev_venv()
        if plugins:
            ensure_plugins()
        if orchestrate:
            ensure_orchestrate_venv()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", action="store_true", help="only the tools venv (.venv-meltano)")
    parser.add_argument("--dev", action="store_true", help="the dev venv (.venv)")
    parser.add_argument("--plugins", action="store_true", help="the Meltano plugins (.meltano/)")
    parser.add_argument("--orchestrate", action="store_true", help="Dagster (.venv-orchestrate)")
    args = parser.parse_args(argv)
    everything = not (args.tools or args.dev or args.plugins or args.orchestrate)
    t0 = time.monotonic()
    bootstrap(tools=True, dev=everything or args.dev, plugins=everything or args.plugins,
              orchestrate=everything or args.orchestrate)
    log(f"bootstrap complete in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
