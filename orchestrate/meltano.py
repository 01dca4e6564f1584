"""Meltano as a program: one shard of the main job, its log, and what its log says.

Standard library (and PyYAML, which Dagster brings) only: the orchestrator's venv never
meets Meltano's or singer-sdk's pins; it runs ``meltano`` from the tools venv.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_KINDS = ("extractors", "loaders", "utilities", "mappers", "transformers", "orchestrators", "files")

_SHARD_LINE = re.compile(r"division_shard (\d+)/(\d+): divisions (\[[^\]]*\]|none)")
_SUMMARY_LINE = re.compile(r"run summary: (\{.*\})")


class SettingsError(ValueError):
    """A bad orchestrator setting: one line naming it (Dagster shows it where the code fails to load)."""


def _env_int(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    """What the orchestrator runs, from the environment (README, "Scaling out")."""

    shards: int = 4
    concurrency: int = 4
    retries: int = 2
    retry_delay: int = 300
    cron: str = "0 3 * * *"
    timezone: str = "Europe/Amsterdam"
    job: str = "exact-to-warehouse"
    project: Path = ROOT
    meltano: str = "meltano"

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        shards = _env_int(env, "EXACT_SHARDS", cls.shards, minimum=1)
        project = Path(env.get("MELTANO_PROJECT_ROOT") or ROOT)
        tools = project / ".venv-meltano" / "bin" / "meltano"
        return cls(
            shards=shards,
            concurrency=_env_int(env, "EXACT_SHARD_CONCURRENCY", shards, minimum=1),
            retries=_env_int(env, "EXACT_SHARD_RETRIES", cls.retries),
            retry_delay=_env_int(env, "EXACT_SHARD_RETRY_DELAY", cls.retry_delay),
            cron=env.get("EXACT_SHARDS_CRON") or cls.cron,
            timezone=env.get("EXACT_SHARDS_TIMEZONE") or cls.timezone,
            job=env.get("EXACT_MELTANO_JOB") or cls.job,
            project=project,
            meltano=env.get("MELTANO_BIN") or shutil.which("meltano") or str(tools),
        )

    def extractor_and_loader(self) -> tuple[str, str]:
        """The extractor and loader of the job's first task (``tap-x target-y``)."""
        import yaml

        project = yaml.safe_load((self.project / "meltano.yml").read_text())
        for job in project.get("jobs", []):
            if job["name"] == self.job:
                extractor, loader = job["tasks"][0].split()[:2]
                return extractor, loader
        raise SettingsError(f"EXACT_MELTANO_JOB={self.job!r} is not a job in {self.project / 'meltano.yml'}")


def system_dir(settings: Settings) -> Path:
    """Meltano's system directory for this project (``.meltano`` unless the environment moves it)."""
    return Path(os.environ.get("MELTANO_SYS_DIR_ROOT") or settings.project / ".meltano")


def sys_dir_env(settings: Settings, name: str) -> dict[str, str]:
    """Meltano settings for one invocation: its own system directory, the shared state.

    Meltano writes each plugin's config, catalog and state files into
    ``<system dir>/run/<plugin>/``; shards started together in one project would
    overwrite each other's. So every shard gets a directory of its own that links the
    installed plugins, while the system database (where the state of every shard's
    state ID lives) stays the project's, unless ``MELTANO_DATABASE_URI`` names another.
    """
    base = system_dir(settings)
    own = base / "orchestrate" / name
    for kind in PLUGIN_KINDS:
        installed = base / kind
        if not installed.is_dir():
            continue
        (own / kind).mkdir(parents=True, exist_ok=True)
        for plugin in installed.iterdir():
            link = own / kind / plugin.name
            if not link.exists():
                link.symlink_to(plugin.resolve(), target_is_directory=True)
    return {
        "MELTANO_SYS_DIR_ROOT": str(own),
        "MELTANO_DATABASE_URI": os.environ.get("MELTANO_DATABASE_URI") or f"sqlite:///{base / 'meltano.db'}",
        "NO_COLOR": "1",
        # Names each step's PostgreSQL sessions (pg_stat_activity, logs): which shard holds a lock.
        "PGAPPNAME": f"exactonline-{name}",
    }


@dataclass
class ShardRun:
    shard: str
    returncode: int
    seconds: float
    log_path: Path
    divisions: list[int] | None = None
    summaries: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def divisions_text(self) -> str:
        if self.divisions is None:
            return "divisions unknown: the tap stopped before it listed them"
        return f"divisions {self.divisions}" if self.divisions else "no division"


def read_log(run: ShardRun, lines: list[str]) -> ShardRun:
    """The shard's divisions, its run summary per division, and its error lines."""
    for line in lines:
        if (found := _SHARD_LINE.search(line)) and run.divisions is None:
            run.divisions = [] if found[3] == "none" else [int(d) for d in json.loads(found[3])]
        elif found := _SUMMARY_LINE.search(line):
            try:
                run.summaries.append(json.loads(found[1]))
            except ValueError:
                run.summaries.append(ast.literal_eval(found[1]))  # the tap logs a Python dict
        elif re.search(r"\b(ERROR|CRITICAL)\b|\[error", line) and len(run.errors) < 20:
            run.errors.append(line.strip()[:500])
    return run


def run_shard(settings: Settings, k: int, n: int, log_dir: Path, *, catalog: dict | None = None,
              attempt: int = 1) -> ShardRun:
    """``meltano run <job>`` for shard k of n, with a state ID of its own.

    ``catalog``: the job's catalog (from the schema step), given to the extractor through
    Meltano's ``catalog`` extra so that the shard skips the tap's discovery.
    """
    name = f"shard-{k}-of-{n}"
    # Meltano's environment names for the job's extractor: TAP_EXACTONLINE_DIVISION_SHARD for the
    # main job, TAP_EXACTONLINE_HOURLY_... for a job of an inherited extractor.
    prefix = settings.extractor_and_loader()[0].upper().replace("-", "_")
    env = {**os.environ, **sys_dir_env(settings, name), f"{prefix}_DIVISION_SHARD": f"{k}/{n}"}
    log_dir.mkdir(parents=True, exist_ok=True)
    if catalog is not None:
        path = log_dir / f"{name}.catalog.json"
        path.write_text(json.dumps(catalog))
        env[f"{prefix}__CATALOG"] = str(path)
    log_path = log_dir / f"{name}-attempt-{attempt}.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        # The job's extract and load only: its transform (dbt-postgres:run) builds the marts from
        # every shard's rows, so it belongs after all shards, not in each one at the same time.
        proc = subprocess.run([settings.meltano, "run", "--state-id-suffix", name, *settings.extractor_and_loader()],
                              cwd=settings.project, env=env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    run = ShardRun(f"{k}/{n}", proc.returncode, time.monotonic() - started, log_path)
    return read_log(run, log_path.read_text(errors="replace").splitlines())
