"""Run target-exactonline against a sandbox, in-process, on the .singer files of tests/data/target."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from exactonline_api.errors import ExactError
from target_exactonline.target import TargetExactOnline
from tests.taprun import sandbox_connection

DATA = Path(__file__).resolve().parent / "data" / "target"
WRITES = ("POST", "PUT", "DELETE")


# The sandbox generates its data lazily, table by table, and a generated child row (an attachment, a
# contact) points at whatever parent rows exist at that moment, including ones the target created.
# Touching the child tables first keeps the generated data apart from ours.
_CHILD_TABLES = ("documents/DocumentAttachments", "crm/Contacts", "crm/Addresses")


def settle_generated_data(sandbox) -> None:
    for division in sandbox.divisions:
        for path in _CHILD_TABLES:
            sandbox.records(division, path)


def target_config(sandbox, tmp_path: Path, **extra) -> dict:
    settle_generated_data(sandbox)
    files = tmp_path / "attachments"
    if not files.exists():
        shutil.copytree(DATA / "files", files)
    config = {
        **sandbox_connection(sandbox, tmp_path),
        "default_division": sandbox.divisions[0],
        "attachments_dir": str(files),
        "reject_file": str(tmp_path / "rejects.jsonl"),
    }
    config.update(extra)
    return config


def singer_text(lines: list[dict]) -> str:
    """Singer messages as the target reads them: one JSON object a line."""
    return "\n".join(json.dumps(m) for m in lines) + "\n"


def record_put_bodies(monkeypatch) -> list[dict]:
    """Collect the body of every PUT the writer sends (to check field-wise updates)."""
    from target_exactonline import connector as writer_module

    bodies: list[dict] = []
    original = writer_module.ExactWriter.update

    def spy(self, endpoint, division, ident, body, *, describe):
        bodies.append(dict(body))
        return original(self, endpoint, division, ident, body, describe=describe)

    monkeypatch.setattr(writer_module.ExactWriter, "update", spy)
    return bodies


def messages(name: str) -> str:
    return (DATA / name).read_text()


@dataclass
class TargetRun:
    states: list[dict]
    summary: dict[str, dict[str, int]]
    error: ExactError | None = None
    rejects: list[dict] = field(default_factory=list)


def run_target(config: dict, text: str) -> TargetRun:
    """Feed ``text`` (Singer messages) to the target; collect emitted states, the summary and the error."""
    target = TargetExactOnline(config=config)
    out = io.StringIO()
    error = None
    with contextlib.redirect_stdout(out):
        try:
            target.listen(io.StringIO(text))
        except ExactError as exc:
            error = exc
    states = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    reject_path = Path(config["reject_file"])
    rejects = [json.loads(line) for line in reject_path.read_text().splitlines()] if reject_path.exists() else []
    run_started = target.rejects.run_started_at if "rejects" in target.__dict__ else None
    return TargetRun(states=states, summary=target.summary(), error=error,
                     rejects=[r for r in rejects if r["run_started_at"] == run_started])


def api_calls(sandbox) -> list[dict]:
    """Calls to Exact's API from the sandbox's request log (token requests excluded)."""
    return [e for e in sandbox.requests() if not e["path"].startswith("oauth2/")]


def writes(sandbox) -> list[dict]:
    return [e for e in api_calls(sandbox) if e["method"] in WRITES]


def ledger_file(config: dict) -> Path:
    """Where the target keeps its write ledger for this config (the default: next to the token store)."""
    from target_exactonline.ledger import ledger_path

    return ledger_path(config)


def ledger_entries(config: dict) -> list[dict]:
    """The committed ledger rows for this config's Exact site, read without taking the run lock."""
    from target_exactonline.ledger import Ledger

    ledger = Ledger(ledger_file(config), site=config["base_url"], writable=False)
    try:
        return ledger.entries()
    finally:
        ledger.close()


def token_strings(document: object, key: str = "") -> list[str]:
    """Every token value in a token store document (nested), to search outputs for."""
    if isinstance(document, dict):
        return [v for k, value in document.items() for v in token_strings(value, k)]
    if "token" in key and isinstance(document, str) and len(document) > 20:
        return [document]
    return []
