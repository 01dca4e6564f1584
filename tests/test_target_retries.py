"""target-exactonline: a POST whose answer is lost never becomes a duplicate."""

from __future__ import annotations

import time

import pytest

from target_exactonline.target import TargetExactOnline
from tests.fakes import client_time_from
from tests.targetrun import DATA, api_calls, messages, run_target, singer_text, target_config


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(TargetExactOnline, "write_retry_delay", 0.05)


ACCOUNTS = singer_text([
    {"type": "SCHEMA", "stream": "accounts", "schema": {"properties": {}}, "key_properties": []},
    {"type": "RECORD", "stream": "accounts", "record": {"Code": "LOST01", "Name": "Lost Answer BV"}},
    {"type": "RECORD", "stream": "accounts", "record": {"Code": "LOST02", "Name": "Second BV"}},
    {"type": "STATE", "value": {"bookmarks": {"accounts": "done"}}},
])


def _codes(sandbox) -> list[str]:
    return sorted(a["Code"].strip() for a in sandbox.records(sandbox.divisions[0], "crm/Accounts")
                  if a["Code"].strip().startswith("LOST"))


def _trail(sandbox) -> list[tuple]:
    return [(c["method"], c["path"], c["status"], c["fault"]) for c in api_calls(sandbox)
            if c["path"] == "crm/Accounts"]


def test_dropped_connection_after_the_post_was_applied_does_not_duplicate(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    sandbox.faults({"kind": "drop_after", "path": "crm/Accounts", "method": "POST", "count": 1})
    result = run_target(config, ACCOUNTS)
    assert result.error is None, result.error
    assert result.summary["accounts"]["created"] == 2
    assert _codes(sandbox) == ["LOST01", "LOST02"]
    assert _trail(sandbox) == [
        ("GET", "crm/Accounts", 200, None),               # the batch lookup
        ("POST", "crm/Accounts", None, "drop_after"),     # applied, answer lost
        ("GET", "crm/Accounts", 200, None),               # found by its natural key: no second POST
        ("POST", "crm/Accounts", 201, None),              # the next record
    ]
    assert result.states == [{"bookmarks": {"accounts": "done"}}]


@pytest.mark.parametrize("fault", [{"kind": "error", "status": 503}, {"kind": "drop"}, {"kind": "error", "status": 500}])
def test_post_lost_before_it_was_applied_is_looked_up_then_sent_again(sandbox, tmp_path, fault):
    config = target_config(sandbox, tmp_path)
    sandbox.faults({**fault, "path": "crm/Accounts", "method": "POST", "count": 1})
    result = run_target(config, ACCOUNTS)
    assert result.error is None, result.error
    assert _codes(sandbox) == ["LOST01", "LOST02"]
    trail = [(m, s) for m, _, s, _ in _trail(sandbox)]
    assert trail == [("GET", 200), ("POST", fault.get("status")), ("GET", 200), ("GET", 200),
                     ("POST", 201), ("POST", 201)]


class UntilTheLatePostLanded:
    """The target's wait before it looks a lost write up, ending when the sandbox has stored the
    late POST: at Exact the write may land any time, so the test decides the order, not the load."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox

    now = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + 60
        while not any(c["method"] == "POST" and c["fault"] == "timeout" for c in self.sandbox.requests()):
            assert time.monotonic() < deadline, "the late POST never landed"
            time.sleep(0.05)


def test_timed_out_post_that_lands_late_is_found_before_posting_again(sandbox, tmp_path, monkeypatch):
    client_time_from(monkeypatch, UntilTheLatePostLanded(sandbox))
    config = target_config(sandbox, tmp_path, request_timeout=1)
    # The sandbox answers (and writes) only after 2 s; the client gives up after 1 s.
    sandbox.faults({"kind": "timeout", "ms": 2000, "path": "crm/Accounts", "method": "POST", "count": 1})
    result = run_target(config, ACCOUNTS)
    assert result.error is None, result.error
    assert _codes(sandbox) == ["LOST01", "LOST02"]
    posts = [c for c in api_calls(sandbox) if c["method"] == "POST"]
    assert len(posts) == 2


def test_lost_attachment_post_is_not_uploaded_twice(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path)
    sandbox.faults({"kind": "drop_after", "path": "documents/DocumentAttachments", "method": "POST", "count": 1})
    result = run_target(config, messages("documents.singer"))
    assert result.error is None, result.error
    division = sandbox.divisions[0]
    docs = {d["ID"] for d in sandbox.records(division, "documents/Documents")
            if d["Subject"] in ("Purchase invoice 2024-001", "Purchase invoice 2024-002", "Sales invoice 2024-100")}
    names = sorted(a["FileName"] for a in sandbox.records(division, "documents/DocumentAttachments")
                   if a["Document"] in docs)
    assert names == ["delivery-note-100.pdf", "invoice-2024-001.pdf", "invoice-2024-002.pdf", "invoice-2024-100.pdf"]
    posts = [c for c in api_calls(sandbox) if c["method"] == "POST" and c["path"] == "documents/DocumentAttachments"]
    assert len(posts) == 4


def test_exact_down_for_every_post_stops_the_run_without_state_and_a_rerun_completes(sandbox, tmp_path):
    config = target_config(sandbox, tmp_path, batch_size=2)
    text = messages("state_batches.singer")
    # The first two POSTs work, then Exact fails every POST.
    sandbox.faults({"kind": "error", "status": 503, "path": "crm/Accounts", "method": "POST", "after": 2})
    failed = run_target(config, text)
    assert failed.error is not None and "did not answer 3 POSTs" in str(failed.error)
    assert failed.states == []  # nothing after the written records may be acknowledged
    division = sandbox.divisions[0]
    codes = sorted(a["Code"].strip() for a in sandbox.records(division, "crm/Accounts") if a["Code"].strip()[:2] == "ST")
    assert codes == ["ST0001", "ST0002"]

    sandbox.faults()
    again = run_target(target_config(sandbox, tmp_path, batch_size=2), text)
    assert again.error is None, again.error
    assert again.summary["accounts"] == {"created": 3, "updated": 0, "unchanged": 2, "rejected": 0}
    codes = sorted(a["Code"].strip() for a in sandbox.records(division, "crm/Accounts") if a["Code"].strip()[:2] == "ST")
    assert codes == ["ST0001", "ST0002", "ST0003", "ST0004", "ST0005"]
    assert again.states == [{"bookmarks": {"accounts": {"line": 5}}}]


def test_state_is_emitted_only_after_the_records_before_it_are_written(sandbox, tmp_path, monkeypatch):
    division = sandbox.divisions[0]
    seen_at_emit: list[int] = []
    original = TargetExactOnline._write_state_message

    def spy(self, state):
        seen_at_emit.append(len([a for a in sandbox.records(division, "crm/Accounts")
                                 if a["Code"].strip()[:2] == "ST"]))
        return original(self, state)

    monkeypatch.setattr(TargetExactOnline, "_write_state_message", spy)
    result = run_target(target_config(sandbox, tmp_path, batch_size=2), messages("state_batches.singer"))
    assert result.states == [{"bookmarks": {"accounts": {"line": 5}}}]
    assert seen_at_emit == [5]
    assert (DATA / "state_batches.singer").exists()
