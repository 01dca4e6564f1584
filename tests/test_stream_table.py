"""Every stream, as the registry builds it, matches the reviewed table in docs/streams.md."""

from __future__ import annotations

import difflib

from tests.stream_table import TABLE, render


def test_stored_stream_table_matches_the_registry():
    stored, fresh = TABLE.read_text(), render()
    diff = "".join(difflib.unified_diff(stored.splitlines(True), fresh.splitlines(True),
                                        "docs/streams.md (stored)", "registry (now)", n=0))
    assert not diff, ("the streams changed; review the diff, then regenerate with "
                      "`.venv/bin/python -m tests.stream_table`:\n" + diff)
