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

A fresh run (about 20 s on 2 cores): pip brings uv (pinned in ``scripts/requirements-meltano.txt``) into a
bare tools venv; then uv installs Meltano, the dev venv and Dagster side by side (threads, a log
each in ``.meltano/logs/``), ``meltano install`` (uv again, ``venv.backend: uv``) follows Meltano,
and each venv's modules are compiled to bytecode, each source file once (``compile_bytecode``), as are
the project's own on every run (``compile_project``).

Usage: ``python3 scripts/bootstrap.py [--tools] [--dev] [--plugins] [--orchestrate]`` (no flag: all).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_VENV = ROOT / ".venv"
TOOLS_VENV = ROOT / ".venv-meltano"
TOOLS_REQUIREMENTS = ROOT / "scripts" / "requirements-meltano.txt"
ORCHESTRATE_VENV = ROOT / ".venv-orchestrate"
ORCHESTRATE_REQUIREMENTS = ROOT / "orchestrate" / "requirements.txt"
LOG_DIR = ROOT / ".meltano" / "logs"
MIN_PYTHON = (3, 10)
_OUTPUT = threading.Lock()  # the install steps run in threads: one line (or log tail) at a time


def log(msg: str) -> None:
    with _OUTPUT:
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


def run_logged(cmd: list[str], log_name: str, *, cwd: Path = ROOT, env: dict | None = None,
               offline_first: bool = False) -> None:
    """Run a command with its output in ``.meltano/logs/<log_name>``; show it on failure.

    ``offline_first`` (uv, or meltano install, which runs uv): try with uv's cache alone first, and
    ask the index only when that fails. uv asks the index about every package whose cached answer
    is over 10 minutes old, 1-4 s per install even when every wheel is in the cache. Offline, the
    versions the pins leave open are the newest the cache knows (what the last online install found).
    """
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / log_name
    env = dict(os.environ if env is None else env)
    offline = offline_first and "UV_OFFLINE" not in env
    with log_path.open("w") as fh:
        for attempt_env in ([{**env, "UV_OFFLINE": "1"}] if offline else []) + [env]:
            proc = subprocess.run(cmd, cwd=cwd, env=attempt_env, stdout=fh, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
            if proc.returncode == 0:
                return
            if attempt_env is not env:
                print("--- not all in uv's cache (above): again, online", file=fh, flush=True)
    tail = log_path.read_text(errors="replace").splitlines()[-60:]
    with _OUTPUT:
        print("\n".join([*tail, f"command failed ({proc.returncode}): {' '.join(cmd)}"]), file=sys.stderr)
    raise SystemExit(f"bootstrap failed, full log: {log_path}")


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
    env["UV_COMPILE_BYTECODE"] = "0"  # compile_bytecode() does it, each file once
    env.pop("VIRTUAL_ENV", None)
    return env


# uv installs no bytecode by default; with PYTHONDONTWRITEBYTECODE set (as on CI machines) every
# process would compile what it imports, 1-3 s of CPU per tap, meltano or pytest start. Compiling
# everything (UV_COMPILE_BYTECODE) was most of a fresh bootstrap's CPU, though, and half of it twice
# over: uv installs from its cache by hard links, so a wheel's modules are the same files (inodes)
# in every venv that has them (singer-sdk in .venv and three plugin venvs, SQLAlchemy in five). A
# timestamp .pyc holds for any path of its source file (the interpreter checks the file's mtime and
# size, and takes co_filename from the path it imports), so each file is compiled once and its .pyc
# hard-linked into the other venvs.
_PYC_LOCK = threading.Lock()  # one compile at a time: each uses every core
_PYC: dict[tuple[int, int], Path] = {}  # (st_dev, st_ino) of a module -> a .pyc compiled from it


def _link(src: Path, dst: Path) -> None:
    with contextlib.suppress(OSError):  # no link, no harm: the interpreter compiles that module itself
        if dst.exists():
            if dst.samefile(src):
                return
            dst.unlink()
        dst.parent.mkdir(exist_ok=True)
        os.link(src, dst)


def _compileall(sources: list[str], log_path: Path) -> None:
    """``python -m compileall`` on ``sources``, its output in ``log_path``. compileall compiles a
    list of files one by one: for a long list, a process per core, each a share."""
    workers = max(1, min(os.cpu_count() or 1, len(sources) // 200))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as fh:
        procs = [subprocess.Popen([sys.executable, "-m", "compileall", "-q", "-i", "-"], cwd=ROOT, text=True,
                                  stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT)
                 for _ in range(workers)]
        for i, proc in enumerate(procs):
            assert proc.stdin is not None
            proc.stdin.write("".join(f"{source}\n" for source in sources[i::workers]))
            proc.stdin.close()
        for proc in procs:
            proc.wait()  # 1: some module does not compile (a template, Python 2 code); uv skips those too


def compile_bytecode(venvs: list[Path], name: str) -> None:
    """Compile the modules of ``venvs`` to bytecode, each source file once (per bootstrap run).

    For this interpreter, which made them all: the tools venv and uv's venvs come from it, and the
    plugins' venvs from the tools venv.
    """
    with _PYC_LOCK:
        todo: dict[tuple[int, int], tuple[str, Path]] = {}
        copies: list[tuple[tuple[int, int], Path]] = []
        for venv in venvs:
            for lib in (venv / "lib", venv / "Lib"):
                for dirpath, _dirs, files in os.walk(lib):
                    for file in files:
                        if not file.endswith(".py"):
                            continue
                        source = os.path.join(dirpath, file)
                        try:
                            st = os.stat(source)
                        except OSError:
                            continue
                        key, pyc = (st.st_dev, st.st_ino), Path(importlib.util.cache_from_source(source))
                        if key in _PYC or key in todo:
                            copies.append((key, pyc))
                        else:
                            todo[key] = (source, pyc)
        _compileall([source for source, _pyc in todo.values()], LOG_DIR / f"compile-{name}.log")
        for key, (_source, pyc) in todo.items():
            if pyc.exists():
                _PYC[key] = pyc
        for key, pyc in copies:
            if key in _PYC:
                _link(_PYC[key], pyc)


# The folders of this project's own modules: the packages, the sandbox, the orchestrator's
# definitions, scripts, benchmarks and tests (tests/test_bootstrap.py checks this is all of them).
PROJECT_DIRS = ("exactonline_api", "tap_exactonline", "target_exactonline", "exact_sandbox", "orchestrate",
                "scripts", "bench", "tests")


def project_sources(root: Path = ROOT) -> list[Path]:
    """Every ``.py`` of PROJECT_DIRS under ``root``."""
    return [path for name in PROJECT_DIRS for path in sorted((root / name).rglob("*.py"))
            if "__pycache__" not in path.parts]


def compile_project(root: Path = ROOT) -> None:
    """Compile this project's modules to bytecode; each run, since they change between runs.

    The editable installs import them from this checkout, where PYTHONDONTWRITEBYTECODE (as on CI
    machines) leaves them uncompiled: every tap, target, sandbox and test worker compiled what it
    imported, a quarter of a tap's start (measured: 0.93 to 0.70 CPU-s for a discovery). When
    nothing changed this only reads each .pyc's header (compileall skips a current one): 0.15 s.
    """
    _compileall([str(path) for path in project_sources(root)], root / ".meltano" / "logs" / "compile-project.log")


def _once(venv: Path, stamp: str, digest: str, ready: Path, title: str, install) -> bool:
    """Run ``install`` unless ``ready`` exists and the stamp holds ``digest``. True if it ran."""
    if ready.exists() and _stamp_ok(venv, stamp, digest):
        return False
    t0 = time.monotonic()
    log(title)
    install()
    _write_stamp(venv, stamp, digest)
    log(f"   {venv.name}/ done in {time.monotonic() - t0:.0f}s")
    return True


def _uv_requirement() -> str:
    """uv's pin in the tools requirements (Meltano needs uv and installs its plugins with it)."""
    found = re.search(r"^uv==\S+", TOOLS_REQUIREMENTS.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"{TOOLS_REQUIREMENTS.relative_to(ROOT)} must pin uv (uv==X.Y.Z)")
    return found.group(0)


def _host_pip_has_python_option() -> bool:
    """pip >= 22.3 installs into another interpreter (``--python``), so the venv needs no pip of its own."""
    try:
        from pip import __version__ as pip_version
    except ImportError:
        return False
    return tuple(int(part) for part in re.findall(r"\d+", pip_version)[:2]) >= (22, 3)


def ensure_uv() -> Path:
    """uv in the tools venv, made bare for it when missing; every install below runs with it."""
    uv = venv_bin(TOOLS_VENV, "uv")
    if uv.exists():
        return uv
    t0 = time.monotonic()
    log(f"installing uv into {TOOLS_VENV.name}/ (once)")
    python = str(tools_python())
    env = _pip_env()
    # ensurepip alone costs 4-5 s of a fresh bootstrap, and the venvs never need pip: uv installs.
    if _host_pip_has_python_option():
        if not tools_python().exists():
            run_logged([sys.executable, "-m", "venv", "--without-pip", str(TOOLS_VENV)], "venv-tools.log")
        cmd = [sys.executable, "-m", "pip", "--python", python, "install", "-q", _uv_requirement()]
    else:
        if not venv_bin(TOOLS_VENV, "pip").exists():
            run_logged([sys.executable, "-m", "venv", str(TOOLS_VENV)], "venv-tools.log")
        cmd = [python, "-m", "pip", "install", "-q", _uv_requirement()]
    run_logged(cmd, "pip-uv.log", env=env)
    log(f"   uv done in {time.monotonic() - t0:.0f}s")
    if not uv.exists():
        raise SystemExit(f"bootstrap failed, no {uv}: full log: {LOG_DIR / 'pip-uv.log'}")
    return uv


def _install(venv: Path, name: str, args: list[str]) -> None:
    """Create ``venv`` when missing and install ``args`` into it with uv, then compile it."""
    uv = str(ensure_uv())
    python = venv_bin(venv, "python")
    if not python.exists():
        run_logged([uv, "venv", "-q", "--allow-existing", "--python", sys.executable, str(venv)],
                   f"venv-{name}.log", env=_pip_env())
    run_logged([uv, "pip", "install", "--python", str(python), *args], f"pip-{name}.log", env=_pip_env(),
               offline_first=True)
    compile_bytecode([venv], name)


def ensure_tools_venv() -> bool:
    """Meltano + embedded PostgreSQL in ``.venv-meltano``. Returns True if it installed anything."""
    return _once(TOOLS_VENV, "tools", _digest(TOOLS_REQUIREMENTS.read_bytes(), sys.version.encode()), meltano_bin(),
                 f"installing Meltano and the embedded PostgreSQL into {TOOLS_VENV.name}/ (once)",
                 lambda: _install(TOOLS_VENV, "tools", ["-r", str(TOOLS_REQUIREMENTS)]))


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
    env = meltano_env({"UV_COMPILE_BYTECODE": "0"})  # compile_bytecode() does it, each file once
    env.pop("MELTANO_SYS_DIR_ROOT", None)  # the plugins belong in this project's .meltano/
    run_logged([str(meltano_bin()), "install"], "meltano-install.log", env=env, offline_first=True)
    compile_bytecode(sorted(stamp_dir.glob("*/*/venv")), "plugins")
    _write_stamp(stamp_dir, "plugins", digest)
    log(f"   plugins done in {time.monotonic() - t0:.0f}s")
    return True


def _side_by_side(steps: list[Callable[[], object]]) -> None:
    """Run each step in a thread (its subprocesses have their own logs); fail as the first failure did.

    The steps wait on the network and on each other's CPU at different moments, so together they
    take about as long as the longest, not the sum.
    """
    failures: list[BaseException] = []

    def run(step: Callable[[], object]) -> None:
        try:
            step()
        except BaseException as exc:  # SystemExit from run_logged, or a bug: re-raised below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(step,), daemon=True) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def bootstrap(*, tools: bool = True, dev: bool = True, plugins: bool = True, orchestrate: bool = False) -> None:
    _check_python()
    if not (tools or dev or plugins or orchestrate):
        return
    with _lock():
        ensure_uv()  # everything installs with it

        def tools_then_plugins() -> None:  # meltano install needs Meltano; the dev venv and Dagster only uv
            ensure_tools_venv()
            if plugins:
                ensure_plugins()

        steps: list[Callable[[], object]] = [tools_then_plugins]
        if dev:
            steps.append(ensure_dev_venv)
        if orchestrate:
            steps.append(ensure_orchestrate_venv)
        _side_by_side(steps)
        compile_project()


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
