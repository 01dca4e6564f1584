"""tap-exactonline -> target-exactonline: Exact's own records, fed back, change nothing.

The tap writes dates as UTC ISO strings, Int64 as integers, codes with Exact's padding; every one
of those must compare equal to what Exact holds, or a round trip would rewrite the whole company.
"""

from __future__ import annotations


from tests.taprun import run_tap, tap_config
from tests.targetrun import api_calls, run_target, singer_text, target_config, writes


def _as_singer(output, streams: set[str]) -> str:
    lines = [m for m in output.messages if m["type"] in ("SCHEMA", "RECORD") and m.get("stream") in streams]
    return singer_text(lines)


def test_the_taps_own_records_fed_back_write_nothing(sandbox, tmp_path):
    division = sandbox.divisions[0]
    tap_dir = tmp_path / "tap"
    tap_dir.mkdir()
    streams = {"accounts", "contacts", "documents"}
    output = run_tap(tap_config(sandbox, tap_dir, divisions=[division]), streams=streams)
    assert all(output.records[s] for s in streams)
    sandbox.reset_log()
    result = run_target(target_config(sandbox, tmp_path), _as_singer(output, streams))
    assert result.error is None, result.error
    for stream in streams:
        counts = result.summary[stream]
        assert counts["unchanged"] == len(output.records[stream]) - counts.get("merged_duplicates", 0), (stream, counts)
        assert counts["created"] == counts["updated"] == counts["rejected"] == 0, (stream, counts)
    assert writes(sandbox) == []
    lookups = [c for c in api_calls(sandbox) if c["method"] == "GET"]
    total = sum(len(output.records[s]) for s in streams)
    assert len(lookups) < total / 5, (len(lookups), total)
